//! A visit counter kept in a sealed cookie.
//!
//! ```sh
//! SESSION_SECRET=$(head -c 32 /dev/urandom | base64) cargo run -p sallyport-session --example counter
//! curl -c jar -b jar http://127.0.0.1:3000/        # 1, 2, 3, ...
//! curl -c jar -b jar -X POST http://127.0.0.1:3000/reset
//! ```

use axum::Router;
use axum::routing::{get, post};
use sallyport_session::{CookieCodec, Error, Passwords, Session, SessionConfig, SessionLayer};
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Counter {
    count: u64,
}

async fn hit(mut session: Session<Counter>) -> Result<String, Error> {
    let count = session.update(|c| {
        c.count += 1;
        c.count
    })?;
    Ok(format!("visit number {count}\n"))
}

async fn reset(mut session: Session<Counter>) -> &'static str {
    session.destroy();
    "reset\n"
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("SESSION_SECRET")
        .map_err(|_| "set SESSION_SECRET to at least 32 characters")?;
    // Plain http on localhost: Secure off, so the cookie is named `sallyport`.
    let config = SessionConfig::new(Passwords::single(secret)?).secure(false);
    let layer = SessionLayer::new(CookieCodec::try_new(config)?);
    let app = Router::new()
        .route("/", get(hit))
        .route("/reset", post(reset))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
