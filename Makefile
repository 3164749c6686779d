# The two commands of the README's quick start: `make demo` and `make test`.
.PHONY: demo test fuzz bench bench-instructions lint unit check-configs check-examples

demo:
	@bash scripts/install-deps build
	cargo run --example demo

test:
	@bash scripts/install-deps test
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo test
	sh scripts/check-systemd
	bash scripts/fuzz

# The cargo-fuzz targets of fuzz/, FUZZ_SECONDS (default 30) each.
fuzz:
	bash scripts/fuzz

# Not part of the tests: the load benchmark of BENCHMARKS.md (a few minutes).
bench:
	bash scripts/bench

# Not part of the tests: user-space instructions per proxied request under
# callgrind, nginx and Portcullis (bare, with a session); steadier than
# req/s on a shared machine (about a minute).
bench-instructions:
	bash scripts/bench-instructions

# Not part of the tests: examples/compose and examples/kubernetes against
# their schemas (PyPI tools in a virtualenv), `portcullis check` of their
# configs, the compose topology without containers (see examples/README.md),
# and the systemd unit.
check-examples:
	bash scripts/check-examples
