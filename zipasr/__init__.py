"""zipasr: multilingual speech recognition with Speech-LLMs and Zipper-LoRA."""

__version__ = "0.1.0"
