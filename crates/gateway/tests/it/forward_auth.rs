//! `admin.forward_auth`: what verify answers without a session depends on the proxy
//! in front (issue 12). nginx's `auth_request` needs the 401; Traefik and Caddy hand
//! the answer to the browser, so a page navigation gets the login redirect.

use sallyport_gateway::ForwardAuth;

use crate::harness::*;

const PAGE: &str = "text/html,application/xhtml+xml";

async fn anonymous_verify(
    h: &Harness,
    headers: &[(&'static str, &'static str)],
) -> reqwest::Response {
    let mut r = h.admin_get("/auth/verify", "").header("accept", PAGE);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn traefik_and_caddy_get_the_login_redirect_for_pages() {
    for fa in [ForwardAuth::Traefik, ForwardAuth::Caddy] {
        let h = Harness::start_with(0, |c| c.admin.forward_auth = Some(fa)).await;
        let r = anonymous_verify(&h, &[("x-forwarded-uri", "/page?tab=2")]).await;
        assert_eq!(r.status(), 303, "{fa:?}");
        assert_eq!(
            r.headers()["location"],
            "/auth/login?next=/page%3Ftab%3D2",
            "{fa:?}"
        );
        // `next` comes from the header these proxies set, not from a client's
        // X-Original-URI passed through.
        let r = anonymous_verify(
            &h,
            &[
                ("x-forwarded-uri", "/page"),
                ("x-original-uri", "/elsewhere"),
            ],
        )
        .await;
        assert_eq!(r.headers()["location"], "/auth/login?next=/page");
        // Anything state-changing, by any header, or an API call: 401, never a redirect.
        for extra in [
            ("x-forwarded-method", "POST"),
            ("x-original-method", "DELETE"),
        ] {
            let r = anonymous_verify(&h, &[("x-forwarded-uri", "/page"), extra]).await;
            assert_eq!(r.status(), 401, "{fa:?} {extra:?}");
        }
        let api = h
            .admin_get("/auth/verify", "")
            .header("accept", "application/json")
            .header("x-forwarded-uri", "/api")
            .send()
            .await
            .unwrap();
        assert_eq!(api.status(), 401);
    }
}

#[tokio::test]
async fn nginx_and_unset_get_401_for_pages() {
    let nginx = Harness::start_with(0, |c| {
        c.admin.forward_auth = Some(ForwardAuth::Nginx);
        c.session.chunking = false;
    })
    .await;
    let unset = Harness::start().await;
    for h in [&nginx, &unset] {
        let r = anonymous_verify(h, &[("x-original-uri", "/page")]).await;
        assert_eq!(r.status(), 401);
        assert!(r.headers().get("location").is_none());
    }
}
