//! Test peers for the integration tests: a mock Google OpenID provider, a test upstream, and a
//! harness that runs the real `portcullis` binary and drives it like a browser.

pub mod frameworks;
pub mod harness;
pub mod hits;
pub mod mock_facebook;
pub mod mock_google;
pub mod mock_x;
pub mod nginx;
pub mod oidc_peer;
pub mod raw_upstream;
pub mod redis;
pub mod served;
pub mod tap;
pub mod upstream;
pub mod verifiers;
pub mod webdriver;
