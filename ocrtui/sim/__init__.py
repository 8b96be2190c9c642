"""vLLM-compatible simulator with CPU OCR engines, the simulated GPU, and the demo pod."""
