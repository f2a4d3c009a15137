#!/usr/bin/env bash
# Run from a Rasa project folder (make rasa does): its action server on 127.0.0.1:5055 in the
# background and Rasa itself on 127.0.0.1:5005 with the REST channel and the HTTP API that gigcx
# uses (`bot.mode: rasa`). Ctrl-C (or Rasa exiting) stops both.
set -euo pipefail
: "${RASA_VENV:?the Rasa venv}" "${MODEL:?the trained model}"
SANIC_HOST=127.0.0.1 "$RASA_VENV/bin/rasa" run actions --actions actions --port 5055 &
actions=$!
trap 'kill "$actions" 2>/dev/null || true' EXIT
"$RASA_VENV/bin/rasa" run --enable-api -i 127.0.0.1 --port 5005 -m "$MODEL" \
    --endpoints endpoints.yml --credentials credentials.yml
