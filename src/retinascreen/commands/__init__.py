"""Sub-commands of the ``retinascreen`` CLI, one module each with ``register(subparsers)``."""
