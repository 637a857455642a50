//! The axum-facing part: [`SessionLayer`] (tower middleware) and the [`Session`]
//! extractor.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use axum_core::extract::FromRequestParts;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower_layer::Layer;
use tower_service::Service;

use crate::{CookieCodec, Error};

type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Tower layer that makes [`Session`] available to handlers and writes the
/// `Set-Cookie` headers of whatever they saved or destroyed onto the response.
///
/// ```no_run
/// # use sallyport_session::{CookieCodec, SessionConfig, SessionLayer};
/// # fn app(passwords: sallyport_iron::Passwords) -> Result<axum::Router, sallyport_session::Error> {
/// let codec = CookieCodec::try_new(SessionConfig::new(passwords))?;
/// let app = axum::Router::new().layer(SessionLayer::new(codec));
/// # Ok(app) }
/// ```
#[derive(Clone)]
pub struct SessionLayer {
    codec: CookieCodec,
    clock: Clock,
    reseal_rotated: bool,
}

impl std::fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer")
            .field("codec", &self.codec)
            .field("reseal_rotated", &self.reseal_rotated)
            .finish_non_exhaustive()
    }
}

impl SessionLayer {
    /// A layer using this codec and the wall clock.
    pub fn new(codec: CookieCodec) -> Self {
        Self {
            codec,
            clock: Arc::new(sallyport_iron::now_ms),
            reseal_rotated: false,
        }
    }

    /// Replaces the clock (milliseconds since the Unix epoch), so expiry can be tested
    /// without sleeping.
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Re-seal, with the newest password, any session read from a cookie sealed with an
    /// older one, on the request that reads it (default off: a read then never writes,
    /// which keeps logout safe from in-flight reads). With it off, call
    /// [`Session::save`] when [`Session::needs_reseal`] says so.
    pub fn reseal_rotated(mut self, on: bool) -> Self {
        self.reseal_rotated = on;
        self
    }

    /// The codec.
    pub fn codec(&self) -> &CookieCodec {
        &self.codec
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`SessionLayer`].
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    inner: S,
    layer: SessionLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let mut cookies = HeaderMap::new();
        for value in req.headers().get_all(header::COOKIE) {
            cookies.append(header::COOKIE, value.clone());
        }
        let handle = SessionHandle(Arc::new(Mutex::new(State {
            codec: self.layer.codec.clone(),
            request_cookies: cookies,
            now_ms: (self.layer.clock)(),
            reseal_rotated: self.layer.reseal_rotated,
            current: Current::FromCookie,
            set_cookie: Vec::new(),
        })));
        req.extensions_mut().insert(handle.clone());
        ResponseFuture {
            inner: self.inner.call(req),
            handle: Some(handle),
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`SessionService`]: appends the session's `Set-Cookie`.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        handle: Option<SessionHandle>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(response)) => response,
        };
        if let Some(handle) = this.handle.take() {
            let set_cookie = std::mem::take(&mut handle.lock().set_cookie);
            if !set_cookie.is_empty() {
                let headers = response.headers_mut();
                for value in set_cookie {
                    headers.append(header::SET_COOKIE, value);
                }
                // A shared cache must never store, and replay to someone else, a
                // response that carries a session cookie.
                headers.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("private, no-store"),
                );
            }
        }
        Poll::Ready(Ok(response))
    }
}

/// Per-request state shared between the layer and every [`Session`] extracted in
/// that request (a middleware and the handler see the same session).
#[derive(Clone)]
struct SessionHandle(Arc<Mutex<State>>);

impl SessionHandle {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked mid-update (every
        // write is a single assignment), so recover from poisoning.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct State {
    codec: CookieCodec,
    request_cookies: HeaderMap,
    now_ms: u64,
    reseal_rotated: bool,
    current: Current,
    /// The `Set-Cookie` values of the latest save or destroy; replaced, not
    /// accumulated, so only the last write of the request reaches the browser.
    set_cookie: Vec<HeaderValue>,
}

/// What this request has done to the session so far.
enum Current {
    /// Nothing yet: read the cookie.
    FromCookie,
    /// Saved: later extractions see this value (as JSON), not the stale cookie.
    Saved(serde_json::Value),
    /// Destroyed: later extractions see an empty session, and saving is refused.
    Destroyed,
}

/// The typed session of the current request, an axum extractor (needs
/// [`SessionLayer`]).
///
/// Reading never fails: a missing, tampered, expired, unknown-password or
/// wrongly-shaped cookie gives `T::default()`. Changes are saved as they are made —
/// [`Session::insert`] and [`Session::update`] seal immediately and return the error
/// (e.g. too large) to the handler — so a change can never be lost silently by
/// forgetting to call `save` (there is deliberately no `DerefMut`).
///
/// ```no_run
/// # use sallyport_session::Session;
/// #[derive(Default, serde::Serialize, serde::Deserialize)]
/// struct Counter { count: u64 }
///
/// async fn hit(mut session: Session<Counter>) -> Result<String, sallyport_session::Error> {
///     let count = session.update(|c| { c.count += 1; c.count })?;
///     Ok(format!("visit {count}"))
/// }
/// ```
pub struct Session<T> {
    handle: SessionHandle,
    data: T,
    origin: Option<(String, bool)>,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Session<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("data", &self.data)
            .field("password_id", &self.password_id())
            .finish_non_exhaustive()
    }
}

impl<T, S> FromRequestParts<S> for Session<T>
where
    T: Serialize + DeserializeOwned + Default + Send,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let handle = parts
            .extensions
            .get::<SessionHandle>()
            .cloned()
            .ok_or(Error::MissingLayer)?;
        let (data, origin, reseal) = {
            let state = handle.lock();
            match &state.current {
                Current::FromCookie => {
                    match state.codec.read::<T>(&state.request_cookies, state.now_ms) {
                        Some(loaded) => {
                            let reseal = loaded.needs_reseal && state.reseal_rotated;
                            let origin = Some((loaded.password_id, loaded.needs_reseal));
                            (loaded.value, origin, reseal)
                        }
                        None => (T::default(), None, false),
                    }
                }
                Current::Saved(json) => {
                    let data = T::deserialize(json).unwrap_or_else(|error| {
                        tracing::debug!(%error, "session saved in this request does not fit this type");
                        T::default()
                    });
                    let id = state.codec.config().passwords().current_id().to_owned();
                    (data, Some((id, false)), false)
                }
                Current::Destroyed => (T::default(), None, false),
            }
        };
        let mut session = Session {
            handle,
            data,
            origin,
        };
        if reseal && let Err(error) = session.save() {
            tracing::warn!(%error, "could not re-seal a session sealed with an older password");
        }
        Ok(session)
    }
}

impl<T> Session<T> {
    /// The session data (`T::default()` when there was no valid cookie).
    pub fn get(&self) -> &T {
        &self.data
    }

    /// The data, consuming the extractor.
    pub fn into_inner(self) -> T {
        self.data
    }

    /// Whether the request carried a valid session cookie (or this request saved one).
    pub fn exists(&self) -> bool {
        self.origin.is_some()
    }

    /// Id of the password the session was sealed with, if it came from a cookie.
    pub fn password_id(&self) -> Option<&str> {
        self.origin.as_ref().map(|(id, _)| id.as_str())
    }

    /// The cookie was sealed with an older password; a [`Session::save`] re-seals it
    /// with the newest.
    pub fn needs_reseal(&self) -> bool {
        self.origin.as_ref().is_some_and(|(_, reseal)| *reseal)
    }
}

impl<T: Serialize> Session<T> {
    /// Replaces the data and saves it.
    pub fn insert(&mut self, value: T) -> Result<(), Error> {
        self.ensure_not_destroyed()?;
        self.data = value;
        self.save()
    }

    /// Changes the data with `f` and saves it; returns what `f` returns.
    pub fn update<R>(&mut self, f: impl FnOnce(&mut T) -> R) -> Result<R, Error> {
        self.ensure_not_destroyed()?;
        let result = f(&mut self.data);
        self.save()?;
        Ok(result)
    }

    /// Seals the current data (with the newest password and a fresh ttl) and queues
    /// the `Set-Cookie` for the response. Fails — and queues nothing — when the
    /// session is too large for a cookie (with chunking off), needs more than four
    /// chunks, or was destroyed earlier in this request.
    pub fn save(&mut self) -> Result<(), Error> {
        let mut state = self.handle.lock();
        if matches!(state.current, Current::Destroyed) {
            return Err(Error::SaveAfterDestroy);
        }
        let set_cookie = state
            .codec
            .encode(&self.data, &state.request_cookies, state.now_ms)?;
        let json = serde_json::to_value(&self.data).map_err(sallyport_iron::Error::Serialize)?;
        state.set_cookie = set_cookie;
        state.current = Current::Saved(json);
        self.origin = Some((
            state.codec.config().passwords().current_id().to_owned(),
            false,
        ));
        Ok(())
    }

    /// Ends the session: the data becomes `T::default()` and the response expires the
    /// cookie (and its chunks). Saving again in the same request is refused.
    pub fn destroy(&mut self)
    where
        T: Default,
    {
        let mut state = self.handle.lock();
        state.set_cookie = state.codec.clear(&state.request_cookies);
        state.current = Current::Destroyed;
        self.data = T::default();
        self.origin = None;
    }

    fn ensure_not_destroyed(&self) -> Result<(), Error> {
        match self.handle.lock().current {
            Current::Destroyed => Err(Error::SaveAfterDestroy),
            _ => Ok(()),
        }
    }
}

impl<T> std::ops::Deref for Session<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.data
    }
}
