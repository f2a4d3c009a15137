"""gigcx's Rasa custom action (`gigcx_rasa.actions.ActionGigcxHandoff`); see README.md."""

__version__ = "0.1.0"
