"""The mechanism of the paper: synthesizers (models of a gradient or of an input), the interfaces
that inject them into autograd (``BackwardInterface``, ``ForwardInterface``) and the feed-forward
networks they sit in. Every trainer uses these; nothing here knows about a notebook."""
