//! The README's bot: places a call through the emulator and echoes what it hears.
//! Run `botmedia emulator` in one terminal, then `cargo run --example hello_bot`.
use botmedia::{Bot, BotSettings, CallItem, CallRequest};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `botmedia emulator`'s address; BotSettings::from_env() for the real service.
    let bot = Bot::start(BotSettings::emulator("http://127.0.0.1:8440")).await?;
    // John, in the emulator's built-in scenario, hums 440 Hz.
    let john = CallRequest::peer_to_peer("112f7296-5fa4-42ca-bae8-6a692b15d4b8", None);
    let mut call = bot.call(john).await?;
    let mut frames = 0;
    while let Some(item) = call.next().await {
        match item {
            CallItem::Frame(frame) => {
                let _ = call.send(frame.pcm); // the echo
                frames += 1;
                if frames == 500 {
                    call.hang_up().await?; // after 10 s
                }
            }
            other => println!("{other:?}"),
        }
    }
    Ok(())
}
