//! Self-tests of the mock Facebook (`support::mock_facebook`), driven by a minimal client written
//! here, so that a failing end-to-end Facebook test can be blamed on Portcullis, not on its peer.
//!
//! The client computes `appsecret_proof` itself (a second implementation, sharing no code with the
//! mock's), and both are held to the issue's test vector: secret `secret`, token `token` ->
//! `e941110e3d2bfe82621f0e3e1434730d7305d106c5f68c87165d0b27a4611a4a` (HMAC-SHA256, hex;
//! <https://developers.facebook.com/docs/graph-api/guides/secure-requests>).

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;
use url::Url;

use crate::support::mock_facebook::{self, FbUser, MockFacebook, SecretSource};

const APP_ID: &str = "1234567890123456";
const APP_SECRET: &str = "0123456789abcdef0123456789abcdef";
const REDIRECT: &str = "http://127.0.0.1:9/oauth2/callback/facebook";
const STATE: &str = "state-abc";
const SCOPE: &str = "email public_profile";
const PROOF_VECTOR: &str = "e941110e3d2bfe82621f0e3e1434730d7305d106c5f68c87165d0b27a4611a4a";

// ---------------------------------------------------------------------------------------------
// A minimal client

async fn mock() -> MockFacebook {
    mock_facebook::start(APP_ID, APP_SECRET).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The client's own appsecret_proof.
fn proof(secret: &str, token: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(token.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn url_with(base: &str, params: &[(&str, &str)]) -> String {
    let mut url = Url::parse(base).unwrap();
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    url.into()
}

fn dialog_params(scope: &str) -> Vec<(&str, &str)> {
    vec![
        ("client_id", APP_ID),
        ("redirect_uri", REDIRECT),
        ("state", STATE),
        ("scope", scope),
        ("response_type", "code"),
    ]
}

fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn location(response: &reqwest::Response) -> Url {
    assert_eq!(response.status(), StatusCode::FOUND, "expected a redirect");
    let value = response.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap();
    Url::parse(value).unwrap()
}

async fn open_dialog(fb: &MockFacebook, version: &str, scope: &str) -> reqwest::Response {
    client()
        .get(url_with(&fb.dialog_url_for(version), &dialog_params(scope)))
        .send()
        .await
        .unwrap()
}

/// A code for `user` through auto-approve.
async fn code_for(fb: &MockFacebook, user: FbUser, scope: &str) -> String {
    fb.set_auto_approve(Some(user));
    let redirect = location(&open_dialog(fb, mock_facebook::DEFAULT_API_VERSION, scope).await);
    param(&redirect, "code").expect("a code")
}

/// The code exchange as a GET with everything in the query (Facebook's documented form).
async fn exchange_get(fb: &MockFacebook, params: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = client()
        .get(url_with(&fb.token_url(), params))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// The code exchange as a form POST (what OAuth 2.0 clients send).
async fn exchange_post(fb: &MockFacebook, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = client()
        .post(fb.token_url())
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

fn code_params<'a>(code: &'a str, secret: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("client_id", APP_ID),
        ("redirect_uri", REDIRECT),
        ("client_secret", secret),
        ("code", code),
    ]
}

async fn token_for(fb: &MockFacebook, user: FbUser, scope: &str) -> String {
    let code = code_for(fb, user, scope).await;
    let (status, body) = exchange_post(fb, &code_params(&code, APP_SECRET)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// `GET /me` with the token in a Bearer header, the `fields` and (when given) the proof.
async fn me(
    fb: &MockFacebook,
    token: &str,
    proof: Option<&str>,
    fields: &str,
) -> (StatusCode, Value) {
    let mut params = vec![("fields", fields)];
    if let Some(p) = proof {
        params.push(("appsecret_proof", p));
    }
    let response = client()
        .get(url_with(&fb.me_url(), &params))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// The chooser's request id for the page in `html`.
fn request_id(html: &str) -> String {
    let marker = "name=\"request\" value=\"";
    let start = html.find(marker).expect("a chooser form") + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end].to_owned()
}

fn assert_graph_error(body: &Value, kind: &str, code: u64, message: &str) {
    let error = &body["error"];
    assert_eq!(error["type"], kind, "{body}");
    assert_eq!(error["code"], code, "{body}");
    assert_eq!(error["message"], message, "{body}");
    assert!(error["fbtrace_id"].is_string(), "{body}");
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn appsecret_proof_matches_the_issues_test_vector() {
    assert_eq!(
        mock_facebook::appsecret_proof("secret", "token"),
        PROOF_VECTOR
    );
    assert_eq!(proof("secret", "token"), PROOF_VECTOR);
}

#[tokio::test]
async fn full_flow_through_the_chooser_token_by_get_and_by_post() {
    let fb = mock().await;
    assert_eq!(fb.proof("token"), proof(APP_SECRET, "token"));

    // Dialog -> chooser page.
    let response = open_dialog(&fb, "v26.0", SCOPE).await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(html.contains("Local test provider — not Facebook"));
    assert!(html.contains("Alice Example") && html.contains("Pat Phone"));
    let record = fb.last_dialog().unwrap();
    assert_eq!(record.version, "v26.0");
    assert_eq!(record.param("scope"), Some(SCOPE));

    // Alice continues: code + state + Facebook's #_=_.
    let consent = client()
        .post(format!("{}{}", fb.base_url, mock_facebook::CONSENT_PATH))
        .form(&[
            ("request", request_id(&html).as_str()),
            ("user", FbUser::alice().id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let redirect = location(&consent);
    assert!(redirect.as_str().starts_with(REDIRECT));
    assert_eq!(redirect.fragment(), Some("_=_"));
    let keys: Vec<String> = redirect
        .query_pairs()
        .map(|(k, _)| k.into_owned())
        .collect();
    assert_eq!(keys, ["code", "state"]);
    assert_eq!(param(&redirect, "state").as_deref(), Some(STATE));
    let code = param(&redirect, "code").unwrap();

    // Token over GET, secret in the query.
    let (status, body) = exchange_get(&fb, &code_params(&code, APP_SECRET)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 5_183_944);
    let token = body["access_token"].as_str().unwrap().to_owned();
    let record = fb.last_token_request().unwrap();
    assert_eq!(record.method, "GET");
    assert_eq!(record.secret_source, SecretSource::Query);
    assert_eq!(record.version, "v26.0");
    assert!(record.rejected.is_none());

    // /me with the proof: only the asked fields (plus id), email present.
    let response = client()
        .get(url_with(
            &fb.me_url(),
            &[
                ("fields", "id,name,email,picture"),
                ("appsecret_proof", &proof(APP_SECRET, &token)),
            ],
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["facebook-api-version"], "v26.0");
    let raw = response.text().await.unwrap();
    assert!(raw.contains("\\u0040"), "Graph escapes @: {raw}");
    assert!(raw.contains("https:\\/\\/"), "Graph escapes /: {raw}");
    let body: Value = serde_json::from_str(&raw).unwrap();
    let alice = FbUser::alice();
    assert_eq!(
        body,
        json!({
            "id": alice.id,
            "name": "Alice Example",
            "email": "alice@example.com",
            "picture": {"data": {
                "height": 50, "is_silhouette": false, "url": alice.picture_url, "width": 50,
            }},
        })
    );
    let graph = fb.last_graph_request().unwrap();
    assert_eq!(graph.fields.as_deref(), Some("id,name,email,picture"));
    assert_eq!(
        graph.appsecret_proof.as_deref(),
        Some(proof(APP_SECRET, &token).as_str())
    );
    assert_eq!(graph.auth_scheme.as_deref(), Some("Bearer"));
    assert_eq!(graph.version, "v26.0");
    assert!(graph.rejected.is_none());

    // Token over POST, secret in the form body; the token as `access_token` in the query.
    let code = code_for(&fb, FbUser::alice(), SCOPE).await;
    let (status, body) = exchange_post(&fb, &code_params(&code, APP_SECRET)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let record = fb.last_token_request().unwrap();
    assert_eq!(record.method, "POST");
    assert_eq!(record.secret_source, SecretSource::Body);
    let response = client()
        .get(url_with(
            &fb.me_url(),
            &[
                ("access_token", token),
                ("appsecret_proof", &proof(APP_SECRET, token)),
            ],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    // Default fields: id and name.
    assert_eq!(body, json!({"id": alice.id, "name": "Alice Example"}));
    assert_eq!(fb.last_graph_request().unwrap().auth_scheme, None);

    assert_eq!(fb.dialog_hits(), 2);
    assert_eq!(fb.consent_hits(), 1);
    assert_eq!(fb.token_hits(), 2);
    assert_eq!(fb.graph_hits(), 2);
}

#[tokio::test]
async fn phone_only_accounts_have_no_email() {
    let fb = mock().await;
    let token = token_for(&fb, FbUser::phone_only(), SCOPE).await;
    let (status, body) = me(
        &fb,
        &token,
        Some(&fb.proof(&token)),
        "id,name,email,picture",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], "122098765432109876");
    assert!(body.get("email").is_none(), "{body}");
    assert!(body["picture"]["data"]["url"].is_string());
}

#[tokio::test]
async fn declined_email_permission_hides_the_email() {
    let fb = mock().await;
    // Through the control.
    fb.set_decline_email(true);
    let token = token_for(&fb, FbUser::alice(), SCOPE).await;
    let (status, body) = me(&fb, &token, Some(&fb.proof(&token)), "id,email").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.get("email").is_none(), "{body}");
    fb.set_decline_email(false);

    // Through the chooser's "Edit access" box.
    fb.set_auto_approve(None);
    let html = open_dialog(&fb, "v26.0", SCOPE).await.text().await.unwrap();
    assert!(html.contains("decline_email"));
    let consent = client()
        .post(format!("{}{}", fb.base_url, mock_facebook::CONSENT_PATH))
        .form(&[
            ("request", request_id(&html).as_str()),
            ("user", FbUser::alice().id.as_str()),
            ("decline_email", "1"),
        ])
        .send()
        .await
        .unwrap();
    let code = param(&location(&consent), "code").unwrap();
    let (_, body) = exchange_post(&fb, &code_params(&code, APP_SECRET)).await;
    let token = body["access_token"].as_str().unwrap();
    let (_, body) = me(&fb, token, Some(&fb.proof(token)), "id,email").await;
    assert!(body.get("email").is_none(), "{body}");

    // Without the email scope, no email either.
    let token = token_for(&fb, FbUser::alice(), "public_profile").await;
    let (_, body) = me(&fb, &token, Some(&fb.proof(&token)), "id,email").await;
    assert!(body.get("email").is_none(), "{body}");
}

#[tokio::test]
async fn missing_proof_is_rejected_when_required() {
    let fb = mock().await;
    let token = token_for(&fb, FbUser::alice(), SCOPE).await;
    let (status, body) = me(&fb, &token, None, "id,name").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_graph_error(
        &body,
        "GraphMethodException",
        100,
        "API calls from the server require an appsecret_proof argument",
    );
    let graph = fb.last_graph_request().unwrap();
    assert!(graph.appsecret_proof.is_none());
    assert!(graph.rejected.is_some());

    // "Require App Secret" off: accepted without a proof.
    fb.set_require_proof(false);
    let (status, body) = me(&fb, &token, None, "id,name").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn wrong_proof_is_rejected_even_when_not_required() {
    let fb = mock().await;
    let token = token_for(&fb, FbUser::alice(), SCOPE).await;
    for required in [true, false] {
        fb.set_require_proof(required);
        for wrong in [
            proof("another-secret", &token),
            proof(APP_SECRET, "another-token"),
            "not-hex".to_owned(),
        ] {
            let (status, body) = me(&fb, &token, Some(&wrong), "id").await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_graph_error(
                &body,
                "GraphMethodException",
                100,
                "Invalid appsecret_proof provided in the API argument",
            );
        }
    }
}

#[tokio::test]
async fn denial_redirects_the_way_facebook_does() {
    let fb = mock().await;
    fb.set_deny(true);
    let response = open_dialog(&fb, "v26.0", SCOPE).await;
    let location = response.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        location,
        format!(
            "{REDIRECT}?error=access_denied&error_code=200&error_description=Permissions+error\
             &error_reason=user_denied&state={STATE}#_=_"
        )
    );

    // The chooser's Cancel button gives the same.
    fb.set_deny(false);
    let html = open_dialog(&fb, "v26.0", SCOPE).await.text().await.unwrap();
    let cancel = client()
        .post(format!("{}{}", fb.base_url, mock_facebook::CONSENT_PATH))
        .form(&[("request", request_id(&html).as_str()), ("deny", "1")])
        .send()
        .await
        .unwrap();
    let redirect = location_of(&cancel);
    assert_eq!(redirect, location);
}

fn location_of(response: &reqwest::Response) -> String {
    location(response).to_string()
}

#[tokio::test]
async fn error_code_callbacks_have_no_error_param() {
    let fb = mock().await;
    fb.set_dialog_error(Some((4201, "User canceled the Dialog flow")));
    let redirect = location(&open_dialog(&fb, "v26.0", SCOPE).await);
    assert_eq!(
        redirect.query(),
        Some("error_code=4201&error_message=User+canceled+the+Dialog+flow&state=state-abc")
    );
    assert_eq!(redirect.fragment(), Some("_=_"));
    assert_eq!(param(&redirect, "error"), None);
    assert_eq!(param(&redirect, "code"), None);
}

#[tokio::test]
async fn client_authentication_errors() {
    let fb = mock().await;
    let code = code_for(&fb, FbUser::alice(), SCOPE).await;

    let (status, body) = exchange_get(&fb, &code_params(&code, "wrong-secret")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_graph_error(
        &body,
        "OAuthException",
        1,
        "Error validating client secret.",
    );
    assert_eq!(
        fb.last_token_request().unwrap().rejected.as_deref(),
        Some("Error validating client secret.")
    );

    let (status, body) = exchange_post(
        &fb,
        &[
            ("client_id", "999"),
            ("redirect_uri", REDIRECT),
            ("client_secret", APP_SECRET),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_graph_error(
        &body,
        "OAuthException",
        101,
        "Error validating application. Invalid application ID.",
    );

    let (_, body) = exchange_post(
        &fb,
        &[
            ("client_id", APP_ID),
            ("client_secret", APP_SECRET),
            ("code", &code),
        ],
    )
    .await;
    assert_graph_error(
        &body,
        "OAuthException",
        191,
        "Missing redirect_uri parameter.",
    );

    // HTTP Basic is not Facebook's way: the secret must be in the query or the body.
    let response = client()
        .post(fb.token_url())
        .basic_auth(APP_ID, Some(APP_SECRET))
        .form(&[
            ("client_id", APP_ID),
            ("redirect_uri", REDIRECT),
            ("code", &code),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        fb.last_token_request().unwrap().secret_source,
        SecretSource::Missing
    );

    // The code survived all that.
    let (status, body) = exchange_post(&fb, &code_params(&code, APP_SECRET)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn codes_are_single_use_bound_to_the_redirect_uri_and_expire() {
    let fb = mock().await;
    let code = code_for(&fb, FbUser::alice(), SCOPE).await;

    // Another redirect_uri.
    let (status, body) = exchange_post(
        &fb,
        &[
            ("client_id", APP_ID),
            ("redirect_uri", "http://127.0.0.1:9/elsewhere"),
            ("client_secret", APP_SECRET),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_graph_error(
        &body,
        "OAuthException",
        100,
        "Error validating verification code. Please make sure your redirect_uri is identical \
         to the one you used in the OAuth dialog request",
    );
    assert_eq!(body["error"]["error_subcode"], 36008);

    // Replay.
    let (status, _) = exchange_get(&fb, &code_params(&code, APP_SECRET)).await;
    assert_eq!(status, StatusCode::OK);
    let response = client()
        .post(fb.token_url())
        .form(&code_params(&code, APP_SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let www = response.headers()[reqwest::header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        www.starts_with("OAuth \"Facebook Platform\" \"invalid_code\""),
        "{www}"
    );
    let body: Value = response.json().await.unwrap();
    assert_graph_error(
        &body,
        "OAuthException",
        100,
        "This authorization code has been used.",
    );
    assert_eq!(body["error"]["error_subcode"], 36009);

    // Unknown code.
    let (_, body) = exchange_post(&fb, &code_params("AQnot-a-code", APP_SECRET)).await;
    assert_graph_error(
        &body,
        "OAuthException",
        100,
        "Invalid verification code format.",
    );

    // Expiry: fine at 9 minutes, expired after 10.
    let code = code_for(&fb, FbUser::alice(), SCOPE).await;
    let late = code_for(&fb, FbUser::alice(), SCOPE).await;
    fb.advance_clock(Duration::from_secs(9 * 60));
    let (status, _) = exchange_post(&fb, &code_params(&code, APP_SECRET)).await;
    assert_eq!(status, StatusCode::OK);
    fb.advance_clock(Duration::from_secs(61 + 60));
    let (status, body) = exchange_post(&fb, &code_params(&late, APP_SECRET)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_graph_error(
        &body,
        "OAuthException",
        100,
        "This authorization code has expired.",
    );
    assert_eq!(body["error"]["error_subcode"], 36007);
}

#[tokio::test]
async fn bad_tokens_and_fields_get_graph_errors() {
    let fb = mock().await;
    let (status, body) = me(&fb, "EAAnot-a-token", Some("00"), "id").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_graph_error(
        &body,
        "OAuthException",
        190,
        "Invalid OAuth access token - Cannot parse access token",
    );

    let response = client().get(fb.me_url()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], 2500);

    let token = fb.mint_token(&FbUser::alice(), &["public_profile", "email"]);
    let (status, body) = me(&fb, &token, Some(&fb.proof(&token)), "id,birthday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_graph_error(
        &body,
        "OAuthException",
        100,
        "(#100) Tried accessing nonexisting field (birthday) on node type (User)",
    );

    let (status, body) = me(
        &fb,
        &token,
        Some(&fb.proof(&token)),
        "picture.width(200).height(200),first_name",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["picture"]["data"]["width"], 200);
    assert_eq!(body["first_name"], "Alice");
    assert_eq!(body["id"], FbUser::alice().id);

    // Tokens expire after ~60 days.
    fb.advance_clock(Duration::from_secs(
        mock_facebook::ACCESS_TOKEN_EXPIRES_IN + 1,
    ));
    let (status, body) = me(&fb, &token, Some(&fb.proof(&token)), "id").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], 190);
    assert_eq!(body["error"]["error_subcode"], 463);
}

#[tokio::test]
async fn versions_are_checked_and_recorded() {
    let fb = mock().await;
    fb.set_auto_approve(Some(FbUser::alice()));
    let redirect = location(&open_dialog(&fb, "v19.0", SCOPE).await);
    assert_eq!(fb.last_dialog().unwrap().version, "v19.0");
    let code = param(&redirect, "code").unwrap();

    let response = client()
        .get(url_with(
            &fb.token_url_for("v19.0"),
            &code_params(&code, APP_SECRET),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(fb.last_token_request().unwrap().version, "v19.0");

    let response = client()
        .get(url_with(
            &fb.me_url_for("v19.0"),
            &[("appsecret_proof", &fb.proof(token))],
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["facebook-api-version"], "v19.0");
    assert_eq!(fb.last_graph_request().unwrap().version, "v19.0");

    // Not vX.Y: the dialog is not found, Graph refuses.
    let response = open_dialog(&fb, "latest", SCOPE).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(fb.last_dialog().unwrap().version, "latest");
    let response = client()
        .get(url_with(
            &fb.me_url_for("v26"),
            &[("appsecret_proof", &fb.proof(token))],
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(fb.last_graph_request().unwrap().version, "v26");
}

#[tokio::test]
async fn malformed_dialogs_get_an_error_page() {
    let fb = mock().await;
    fb.set_auto_approve(Some(FbUser::alice()));
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("client_id", "999"), ("redirect_uri", REDIRECT)],
        vec![("client_id", APP_ID)],
        vec![
            ("client_id", APP_ID),
            ("redirect_uri", "https://evil.example/cb"),
        ],
        vec![
            ("client_id", APP_ID),
            ("redirect_uri", REDIRECT),
            ("scope", "email,no_such_permission"),
        ],
        vec![
            ("client_id", APP_ID),
            ("redirect_uri", REDIRECT),
            ("response_type", "token"),
        ],
    ];
    for params in cases {
        let response = client()
            .get(url_with(&fb.dialog_url(), &params))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{params:?}");
        let html = response.text().await.unwrap();
        assert!(html.contains("Local test provider — not Facebook"));
    }
    // A registered redirect URI replaces the loopback default; scope may be comma-separated and
    // state is optional.
    fb.register_redirect_uri("https://app.example.com/oauth2/callback/facebook");
    let response = client()
        .get(url_with(
            &fb.dialog_url(),
            &[
                ("client_id", APP_ID),
                (
                    "redirect_uri",
                    "https://app.example.com/oauth2/callback/facebook",
                ),
                ("scope", "email,public_profile"),
            ],
        ))
        .send()
        .await
        .unwrap();
    let redirect = location(&response);
    assert_eq!(param(&redirect, "state"), None);
    assert!(param(&redirect, "code").is_some());
    let response = open_dialog(&fb, "v26.0", SCOPE).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn fail_graph_answers_transient_server_errors() {
    let fb = mock().await;
    let code = code_for(&fb, FbUser::alice(), SCOPE).await;
    let token = fb.mint_token(&FbUser::alice(), &["public_profile", "email"]);
    fb.fail_graph(Some(503));
    let (status, body) = exchange_post(&fb, &code_params(&code, APP_SECRET)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_graph_error(
        &body,
        "OAuthException",
        2,
        "An unexpected error has occurred. Please retry your request later.",
    );
    assert_eq!(body["error"]["is_transient"], true);
    let (status, body) = me(&fb, &token, Some(&fb.proof(&token)), "id").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], 2);

    fb.fail_graph(Some(500));
    let (status, _) = me(&fb, &token, Some(&fb.proof(&token)), "id").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

    fb.fail_graph(None);
    let (status, _) = exchange_post(&fb, &code_params(&code, APP_SECRET)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the code was not consumed by the failure"
    );
    let (status, _) = me(&fb, &token, Some(&fb.proof(&token)), "id").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn stop_refuses_connections() {
    let fb = mock().await;
    let url = fb.me_url();
    fb.stop().await;
    assert!(client().get(url).send().await.is_err());
}
