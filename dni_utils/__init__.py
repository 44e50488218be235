"""dni_utils: synthesizers, decoupled neural interfaces and training loops for reproducing
Jaderberg et al. (2016), *Decoupled Neural Interfaces using Synthetic Gradients*.

Importing the package has no side effects (no seeding, no plotting style).
"""

from dni_utils.experiments.profiles import PROFILES, check_profile, select_profile
from dni_utils.mechanism.interfaces import INTERFACE_MODES, BackwardInterface, ForwardInterface, synthesizer_loss
from dni_utils.mechanism.synthesizers import SYNTHESIZER_KINDS, ConvSynthesizer, MLPSynthesizer, make_synthesizer

__all__ = [
    "INTERFACE_MODES",
    "PROFILES",
    "SYNTHESIZER_KINDS",
    "BackwardInterface",
    "ConvSynthesizer",
    "ForwardInterface",
    "MLPSynthesizer",
    "check_profile",
    "make_synthesizer",
    "select_profile",
    "synthesizer_loss",
]

__version__ = "0.1.0"
