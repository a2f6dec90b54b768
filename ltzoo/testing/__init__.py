"""What ltzoo ships for testing code that pushes and loads models without the network.

:mod:`ltzoo.testing.hub_server` is a local stand-in for huggingface.co that the real ``huggingface_hub``
client talks to: ltzoo's own tests and ``ltzoo demo`` run on it, and so can yours.
"""
