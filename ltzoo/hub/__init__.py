"""Hugging Face Hub: push runs with a model card, download them (cache, offline, sha256), ONNX sessions."""

from ltzoo.hub.download import download_run, load_onnx_session

__all__ = ["download_run", "load_onnx_session"]
