#!/usr/bin/env bash
# Sourced by the other scripts: makes sure cargo is on PATH on a fresh Debian machine.
if ! command -v cargo >/dev/null 2>&1; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: installing the Rust toolchain with rustup" >&2
  apt-get update -q && apt-get install -y -q curl ca-certificates build-essential
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  . "$HOME/.cargo/env"
fi
