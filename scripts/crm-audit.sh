#!/bin/sh
# Audit trail handler: appends each event it receives (one JSON line) to
# $AUDIT_LOG and answers nothing, which means "processed, no change".
# Runs with a cleared environment: only PATH and the variables set in
# handlers.toml are present.
set -eu
: "${AUDIT_LOG:?AUDIT_LOG is not set}"
{ cat; echo; } >> "$AUDIT_LOG"
