"""ocrtui: compare OCR vision-language models served by vLLM on one GPU pod."""

__version__ = "0.1.0"
