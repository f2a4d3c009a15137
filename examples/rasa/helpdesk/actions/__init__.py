# gigcx's handoff action (the gigcx-rasa package, integrations/rasa): importing it registers
# `action_gigcx_handoff` with this action server.
import gigcx_rasa.actions  # noqa: F401
