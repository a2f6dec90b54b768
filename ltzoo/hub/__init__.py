"""The Hugging Face Hub client on the fetching side: settings read at call time, one error type, the layout of a
repo pushed by ltzoo, and the download of a run through the Hub cache (offline mode, pinned revisions, sha256
checks). Publishing (the card, the plots, the commit) is :mod:`ltzoo.publish`; ONNX sessions of a pushed export
are :mod:`ltzoo.export.sessions`."""
