//! Prometheus metrics (SPEC.md "Operations"): one process-wide registry,
//! shared by every configuration a reload swaps in, rendered by the admin
//! listener. The per-request recording touches pre-resolved children only
//! (an index into an array, two atomic adds): no label lookup, no allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::session::SessionStore;

/// Every outcome the proxy records per request (the access log's `outcome`).
pub const OUTCOMES: [&str; 27] = [
    "proxied",
    "upgrade",
    "upgrade_session_expired",
    "public",
    "public_upgrade",
    "bad_request",
    "forbidden",
    "unauthenticated",
    "sign_in_redirect",
    "sign_in_page",
    "start",
    "callback",
    "callback_bad_state",
    "signed_in",
    "provider_error",
    "sign_out",
    "userinfo",
    "auth_ok",
    "auth_forbidden",
    "auth_unauthenticated",
    "method_not_allowed",
    "proxy_error",
    "session_store_unavailable",
    "jwks",
    "bearer_rejected",
    "sign_out_at_provider",
    "access_token_refused",
];

/// Histogram buckets for a proxy: 100 µs to 10 s.
pub const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A provider call, the `step` label of
/// `portcullis_provider_request_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Discovery,
    Token,
    Userinfo,
    Jwks,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Discovery => "discovery",
            Step::Token => "token",
            Step::Userinfo => "userinfo",
            Step::Jwks => "jwks",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    /// One child per outcome, then "other".
    requests: Vec<IntCounter>,
    durations: Vec<Histogram>,
    upstream: Histogram,
    provider: HistogramVec,
    sign_ins: IntCounterVec,
    connections: IntGauge,
    reloads: IntCounterVec,
    revoked: IntCounter,
    revoked_seen: AtomicU64,
    provider_ready: IntGaugeVec,
    store_up: IntGauge,
    store_up_registered: OnceLock<()>,
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

fn histogram_opts(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(BUCKETS.to_vec())
}

impl Metrics {
    /// A fresh registry (tests); the process uses [`global`].
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // Names and labels are constants: registering cannot fail but on
        // a programming error, caught by the unit tests.
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("metric names are unique");
        };
        let requests_vec = IntCounterVec::new(
            Opts::new(
                "portcullis_requests_total",
                "Requests by what Portcullis did with them.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let durations_vec = HistogramVec::new(
            histogram_opts(
                "portcullis_request_duration_seconds",
                "Time from the request's arrival to its access-log line, by outcome.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let names = OUTCOMES.iter().copied().chain(["other"]);
        let requests = names
            .clone()
            .map(|o| requests_vec.with_label_values(&[o]))
            .collect();
        let durations = names
            .map(|o| durations_vec.with_label_values(&[o]))
            .collect();
        let upstream = Histogram::with_opts(histogram_opts(
            "portcullis_upstream_duration_seconds",
            "Time from sending a request to the application to the end of its answer.",
        ))
        .expect("valid metric");
        let provider = HistogramVec::new(
            histogram_opts(
                "portcullis_provider_request_duration_seconds",
                "Calls to identity providers, by provider and step (discovery, token, userinfo, jwks).",
            ),
            &["provider", "step"],
        )
        .expect("valid metric");
        let sign_ins = IntCounterVec::new(
            Opts::new(
                "portcullis_sign_ins_total",
                "Sign-ins that came back from a provider, by result (ok, forbidden, failed, bad_state, store_unavailable).",
            ),
            &["provider", "result"],
        )
        .expect("valid metric");
        let connections = IntGauge::new(
            "portcullis_connections_active",
            "Client connections open on the public listener.",
        )
        .expect("valid metric");
        let reloads = IntCounterVec::new(
            Opts::new(
                "portcullis_config_reloads_total",
                "Configuration reloads (SIGHUP) by result (success, failure).",
            ),
            &["result"],
        )
        .expect("valid metric");
        for result in ["success", "failure"] {
            reloads.with_label_values(&[result]);
        }
        let revoked = IntCounter::new(
            "portcullis_sessions_revoked_total",
            "Sessions ended by an operator (admin listener or `portcullis sessions revoke`, on any replica), as announced to this replica.",
        )
        .expect("valid metric");
        let provider_ready = IntGaugeVec::new(
            Opts::new(
                "portcullis_provider_ready",
                "Whether a provider's discovery/keys are loaded (1) or not (0).",
            ),
            &["provider"],
        )
        .expect("valid metric");
        let store_up = IntGauge::new(
            "portcullis_session_store_up",
            "Whether Redis answered the last health check (1) or not (0).",
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new("portcullis_build_info", "Version of the running binary."),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        reg(Box::new(requests_vec));
        reg(Box::new(durations_vec));
        reg(Box::new(upstream.clone()));
        reg(Box::new(provider.clone()));
        reg(Box::new(sign_ins.clone()));
        reg(Box::new(connections.clone()));
        reg(Box::new(reloads.clone()));
        reg(Box::new(revoked.clone()));
        reg(Box::new(provider_ready.clone()));
        reg(Box::new(build_info));
        #[cfg(target_os = "linux")]
        reg(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        Metrics {
            registry,
            requests,
            durations,
            upstream,
            provider,
            sign_ins,
            connections,
            reloads,
            revoked,
            revoked_seen: AtomicU64::new(0),
            provider_ready,
            store_up,
            store_up_registered: OnceLock::new(),
        }
    }

    /// One finished request: its outcome and how long it took.
    pub fn request(&self, outcome: &str, took: Duration) {
        let i = OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(OUTCOMES.len());
        self.requests[i].inc();
        self.durations[i].observe(took.as_secs_f64());
    }

    /// One exchange with the application.
    pub fn upstream(&self, took: Duration) {
        self.upstream.observe(took.as_secs_f64());
    }

    /// One call to a provider (`provider` is a configured id).
    pub fn provider_call(&self, provider: &str, step: Step, took: Duration) {
        self.provider
            .with_label_values(&[provider, step.as_str()])
            .observe(took.as_secs_f64());
    }

    /// A sign-in that came back from `provider`.
    pub fn sign_in(&self, provider: &str, result: &str) {
        self.sign_ins.with_label_values(&[provider, result]).inc();
    }

    /// A configuration reload, `ok` or refused.
    pub fn reload(&self, ok: bool) {
        self.reloads
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
    }

    /// Counts an open client connection until the guard drops.
    pub fn connection(&'static self) -> ConnectionGuard {
        self.connections.inc();
        ConnectionGuard(self)
    }

    /// Prometheus text exposition format 0.0.4, with the values that are
    /// read when scraped (provider readiness, the session store).
    pub fn render(&self, ready: &[(String, bool)], store: &SessionStore) -> String {
        // Providers removed by a reload disappear from the series.
        self.provider_ready.reset();
        for (id, ok) in ready {
            self.provider_ready
                .with_label_values(&[id])
                .set(i64::from(*ok));
        }
        if let Some(redis) = store.redis() {
            let total = redis.revoked_total();
            let seen = self.revoked_seen.swap(total, Ordering::Relaxed);
            self.revoked.inc_by(total.saturating_sub(seen));
            self.store_up_registered.get_or_init(|| {
                let _ = self.registry.register(Box::new(self.store_up.clone()));
            });
            self.store_up.set(i64::from(redis.is_up()));
        }
        let mut out = Vec::with_capacity(8 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics could not be rendered");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// See [`Metrics::connection`].
pub struct ConnectionGuard(&'static Metrics);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.dec();
    }
}

/// Runs `call` and records its duration as a `step` of `provider`.
pub async fn time_provider<T>(
    provider: &str,
    step: Step,
    call: impl std::future::Future<Output = T>,
) -> T {
    let span = crate::traces::start_child(
        None,
        match step {
            Step::Discovery => "provider discovery",
            Step::Token => "provider token",
            Step::Userinfo => "provider userinfo",
            Step::Jwks => "provider jwks",
        },
        opentelemetry::trace::SpanKind::Client,
    );
    let started = std::time::Instant::now();
    let out = call.await;
    global().provider_call(provider, step, started.elapsed());
    if let Some(span) = span {
        crate::traces::end(
            &span,
            vec![
                opentelemetry::KeyValue::new("portcullis.provider", provider.to_owned()),
                opentelemetry::KeyValue::new("portcullis.step", step.as_str()),
            ],
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        let m = Metrics::new();
        m.request("proxied", Duration::from_micros(150));
        m.request("proxied", Duration::from_millis(20));
        m.request("signed_in", Duration::from_millis(1));
        m.request("something_new", Duration::ZERO);
        m.upstream(Duration::from_millis(3));
        m.provider_call("google", Step::Token, Duration::from_millis(40));
        m.sign_in("google", "ok");
        m.reload(false);
        let text = m.render(
            &[("google".into(), true), ("acme".into(), false)],
            &SessionStore::Cookie,
        );
        assert!(
            text.contains("portcullis_requests_total{outcome=\"proxied\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("portcullis_requests_total{outcome=\"signed_in\"} 1\n"));
        assert!(text.contains("portcullis_requests_total{outcome=\"other\"} 1\n"));
        assert!(text.contains(
            "portcullis_request_duration_seconds_bucket{outcome=\"proxied\",le=\"0.00025\"} 1\n"
        ));
        assert!(text.contains(
            "portcullis_request_duration_seconds_bucket{outcome=\"proxied\",le=\"0.025\"} 2\n"
        ));
        assert!(text.contains("portcullis_request_duration_seconds_count{outcome=\"proxied\"} 2\n"));
        assert!(text.contains("portcullis_upstream_duration_seconds_count 1\n"));
        assert!(text.contains(
            "portcullis_provider_request_duration_seconds_count{provider=\"google\",step=\"token\"} 1\n"
        ));
        assert!(text.contains("portcullis_sign_ins_total{provider=\"google\",result=\"ok\"} 1\n"));
        assert!(text.contains("portcullis_config_reloads_total{result=\"failure\"} 1\n"));
        assert!(text.contains("portcullis_config_reloads_total{result=\"success\"} 0\n"));
        assert!(text.contains("portcullis_provider_ready{provider=\"google\"} 1\n"));
        assert!(text.contains("portcullis_provider_ready{provider=\"acme\"} 0\n"));
        assert!(
            text.contains("portcullis_sessions_revoked_total 0\n"),
            "{text}"
        );
        assert!(text.contains("portcullis_connections_active 0\n"));
        assert!(text.contains("portcullis_build_info{version=\""));
        assert!(!text.contains("portcullis_session_store_up"), "{text}");
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
        // A provider gone after a reload is gone from the series.
        let text = m.render(&[("google".into(), true)], &SessionStore::Cookie);
        assert!(!text.contains("provider=\"acme\""), "{text}");
    }

    #[test]
    fn connections_are_counted_while_open() {
        let m: &'static Metrics = Box::leak(Box::new(Metrics::new()));
        let a = m.connection();
        let b = m.connection();
        assert_eq!(m.connections.get(), 2);
        drop(a);
        drop(b);
        assert_eq!(m.connections.get(), 0);
    }

    #[test]
    fn the_grafana_dashboard_uses_only_series_that_exist() {
        let m = Metrics::new();
        m.provider_call("p", Step::Token, Duration::ZERO);
        m.sign_in("p", "ok");
        let text = m.render(&[("p".into(), true)], &SessionStore::Cookie);
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let dashboard = include_str!("../examples/grafana/portcullis.json");
        let mut used = 0;
        for part in dashboard.split("portcullis_").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            let full = format!("portcullis_{name}");
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| full.strip_suffix(s))
                .unwrap_or(&full);
            // Registered only with Redis.
            if base == "portcullis_session_store_up" {
                continue;
            }
            assert!(families.contains(&base), "{full} is not exported");
            used += 1;
        }
        assert!(used >= 10, "{used}");
    }

    #[test]
    fn every_outcome_the_proxy_sets_is_listed() {
        let src = [
            include_str!("proxy/mod.rs"),
            include_str!("proxy/upgrade.rs"),
        ]
        .concat();
        for part in src.split("ctx.outcome = \"").skip(1) {
            let name = part.split('"').next().unwrap_or_default();
            assert!(
                OUTCOMES.contains(&name),
                "outcome {name:?} missing from OUTCOMES"
            );
        }
    }
}
