"""Data: image data sets (``images``: MNIST, CIFAR-10 and their offline stand-ins), character
text (``text``: Penn Treebank) and the generated sequence tasks (``tasks``: Copy, Repeat Copy)."""
