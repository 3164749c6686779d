# The two commands of the README's quick start: `make demo` and `make test`.
.PHONY: demo test fuzz bench lint unit check-configs check-examples

demo:
	@bash scripts/install-deps build
	cargo run --example demo

test:
	@bash scripts/install-deps test
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo test
	sh scripts/check-examples
	bash scripts/fuzz

# The example deployment files that can be checked here (the systemd unit).
check-examples:
	cargo build --bin portcullis
	sh scripts/check-examples

# The cargo-fuzz targets of fuzz/, FUZZ_SECONDS (default 30) each.
fuzz:
	bash scripts/fuzz

# Not part of the tests: the load benchmark of BENCHMARKS.md (a few minutes).
bench:
	bash scripts/bench
