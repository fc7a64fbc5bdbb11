"""cifake-hub: the CIFAKE study (Bird & Lotfi 2023) as Hugging Face software."""

__version__ = "0.1.0"
