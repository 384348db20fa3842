//! Watch the connection come and go: the client reconnects with backoff
//! and resumes its session, and `state_changes` says what is happening.
//!
//! ```sh
//! cargo run -p tern-client --example connection_state [mqtt://localhost:1883]
//! ```

use std::time::Duration;
use tern_client::{Client, Error, Options, State};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or("mqtt://localhost:1883".into());
    let options = Options::from_url(&url)?
        .client_id("tern-example-state")?
        .clean_start(false)
        .session_expiry(3600);
    let (client, _messages) = Client::connect(options).await?;
    let mut states = client.state_changes();
    println!("{}", describe(&states.borrow_and_update()));

    // Print every change for a while (restart the broker to see one).
    let watching = async {
        while states.changed().await.is_ok() {
            println!("{}", describe(&states.borrow_and_update()));
        }
    };
    let seconds = std::env::var("WATCH_SECONDS").map_or(2, |s| s.parse().unwrap_or(2));
    let _ = tokio::time::timeout(Duration::from_secs(seconds), watching).await;
    client.disconnect().await
}

fn describe(state: &State) -> String {
    match state {
        State::Connecting => "connecting".into(),
        State::Connected {
            session_present, ..
        } => {
            format!("connected (session present: {session_present})")
        }
        State::Disconnected { error, retry_in } => format!("lost: {error}; retry in {retry_in:?}"),
        State::Closed { error } => format!("closed ({error:?})"),
        _ => "other".into(),
    }
}
