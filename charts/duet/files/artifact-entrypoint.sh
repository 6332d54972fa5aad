#!/bin/sh
# Entrypoint of the containers that read the model repository: check it against its artifact.json, then exec
# the container's command line ("$@": tritonserver ... in the predictor; python -m transformers_pre in the
# transformer of an encrypted repository, which reads its side files from DUET_MODEL_REPOSITORY). KServe
# appends its storage initializer after any init container of ours, so the check runs here, after the download
# and before anything reads a file.
#
# DUET_MODEL_DIR          where KServe put the repository (/mnt/models)
# DUET_ARTIFACT_ENCRYPTED the encrypted repository (repository.tar.enc), optional: decrypted with openssl into
#                         DUET_DECRYPTED_DIR (a memory-backed emptyDir) with the passphrase in
#                         DUET_ARTIFACT_KEY_FILE, then checked and served from there.
# A failure exits non-zero with the reason on stderr and in the termination message (kubectl describe pod).
set -u

checker="${DUET_CHECKER:-/duet/check_digests.py}"
termination_log="${DUET_TERMINATION_LOG:-/dev/termination-log}"

fail() {
    echo "$1" >&2
    printf '%s\n' "$1" > "$termination_log" 2>/dev/null || true
    exit 1
}

repo="${DUET_MODEL_DIR:-/mnt/models}"
if [ -n "${DUET_ARTIFACT_ENCRYPTED:-}" ]; then
    out="${DUET_DECRYPTED_DIR:?DUET_DECRYPTED_DIR is not set}"
    [ -f "$DUET_ARTIFACT_ENCRYPTED" ] || fail "artifact check failed: $DUET_ARTIFACT_ENCRYPTED: missing"
    key="${DUET_ARTIFACT_KEY_FILE:?DUET_ARTIFACT_KEY_FILE is not set}"
    undecryptable="artifact check failed: $DUET_ARTIFACT_ENCRYPTED: cannot be decrypted with the key (wrong key or damaged file)"
    # openssl's exit status, which the pipe would otherwise hide behind tar's.
    status="$out/.openssl-status"
    { openssl enc -d -aes-256-cbc -pbkdf2 -iter 200000 -md sha256 -in "$DUET_ARTIFACT_ENCRYPTED" -pass "file:$key"
      echo $? > "$status"; } | tar -x -C "$out" -f - 2>/dev/null || fail "$undecryptable"
    [ "$(cat "$status")" = 0 ] || fail "$undecryptable"
    rm -f "$status"
    repo="$out"
fi

if ! message=$(python3 "$checker" "$repo" 2>&1); then
    fail "$message"
fi
echo "$message"

# Serve what was checked: point Triton's repository flag and the transformer's DUET_MODEL_REPOSITORY at it (the
# decrypted copy when encrypted).
export DUET_MODEL_REPOSITORY="$repo"
count=$#
while [ "$count" -gt 0 ]; do
    arg=$1
    shift
    case $arg in
        --model-repository=*|--model-store=*) arg="--model-repository=$repo" ;;
    esac
    set -- "$@" "$arg"
    count=$((count - 1))
done
exec "$@"
