//! Integration tests: one binary (the 2-core machine links once). Each test
//! starts the real `portcullis` binary with peers bound to 127.0.0.1:0.

mod support;

mod access_token;
mod assertion;
mod bearer;
mod browser;
mod cli;
mod common;
mod examples_compose;
mod facebook;
mod fastpath;
mod forward_auth;
mod frameworks;
mod gate;
mod login;
mod mock_facebook_selftest;
mod mock_selftest;
mod mock_x_selftest;
mod oidc;
mod oidc_peer_selftest;
mod ops;
mod pages;
mod policy;
mod provider_sign_out;
mod proxying;
mod redis_store;
mod security;
mod smuggling;
mod twitter;
