//! A TCP proxy the test controls, put between Latch and a real server (Redis, Postgres) to
//! make that server "go away" and come back (architecture §9): `cut` drops every open
//! connection and refuses new ones; `restore` lets them through again.

#![allow(unreachable_pub, dead_code)]

use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Proxy {
    pub port: u16,
    state: Arc<Mutex<State>>,
    accept: AbortHandle,
}

#[derive(Default)]
struct State {
    cut: bool,
    open: Vec<AbortHandle>,
}

impl Proxy {
    /// Listens on a free local port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let upstream = upstream.to_owned();
        let st = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if st.lock().unwrap().cut {
                    drop(client); // refused: the server is "down"
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut st = st.lock().unwrap();
                st.open.retain(|t| !t.is_finished());
                st.open.push(task.abort_handle());
            }
        })
        .abort_handle();
        Proxy { port, state, accept }
    }

    /// The server goes away: open connections are dropped, new ones are closed at once.
    pub fn cut(&self) {
        let mut st = self.state.lock().unwrap();
        st.cut = true;
        for t in st.open.drain(..) {
            t.abort();
        }
    }

    /// The server is back.
    pub fn restore(&self) {
        self.state.lock().unwrap().cut = false;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
