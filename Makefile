# The two commands of the README. Each installs what it needs first (scripts/setup.sh).
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
export CARGO_TERM_COLOR ?= never

.PHONY: demo test setup

## Runs the main job.
demo:
	@scripts/setup.sh
	cargo run --release -p botmedia-cli --bin botmedia -- demo

## Installs prerequisites, then runs format, lint and every test.
test:
	@scripts/setup.sh --test
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo check --manifest-path fuzz/Cargo.toml --bins
	cargo nextest run --workspace --no-fail-fast
	cargo test --workspace --doc
