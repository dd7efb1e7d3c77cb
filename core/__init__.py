"""Shuttle Lens inference engine."""
import logging

# bitsandbytes warns at import that its optional 4-bit CPU kernels are missing (only 8-bit is
# used here) and on every int8 matmul that activations are cast to fp16: expected, not news.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
