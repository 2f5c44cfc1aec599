//! `botmedia check`: validate a create-call request as the service does.

use std::process::ExitCode;

use clap::Args;
use serde_json::{Value, json};
use signalling::{
    GraphError, MediaHosting, ParseMode, PermissionRequirement, Scenario, ValidatedRequest,
    parse_call, to_json_pretty, validate_create_call,
};

use super::{CliError, read_input};

#[derive(Args)]
pub(super) struct CheckArgs {
    /// The request body, a JSON `call` (FILE or - for standard input).
    #[arg(value_name = "FILE")]
    file: String,
    /// Accept trailing commas and duplicated keys (the last one wins), as some of the
    /// spec's examples are printed.
    #[arg(long)]
    tolerant: bool,
    /// Print one JSON document: the normalized call, its scenario, media hosting and the
    /// permissions it needs (or Graph's error envelope).
    #[arg(long)]
    json: bool,
}

pub(super) fn run(args: CheckArgs) -> Result<ExitCode, CliError> {
    let text = read_input(&args.file)?;
    let mode = if args.tolerant {
        ParseMode::Tolerant
    } else {
        ParseMode::Strict
    };
    let outcome = parse_call(&text, mode)
        .map_err(GraphError::from)
        .and_then(|call| validate_create_call(&call).map(|v| (call, v)));
    match outcome {
        Ok((call, validated)) => {
            if args.json {
                let doc = json!({
                    "call": signalling::model::GraphType::to_json_value(&call),
                    "scenario": scenario_name(&validated.scenario),
                    "media": media_name(validated.media),
                    "permissions": permissions_json(&validated.required_permissions),
                });
                println!("{}", pretty(&doc));
            } else {
                println!("{}", to_json_pretty(&call));
                print_summary(&validated);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            println!("{}", pretty(&err.to_json()));
            eprintln!(
                "botmedia check: {} refused ({} {}): {}",
                args.file,
                err.status(),
                err.code(),
                err.message()
            );
            Ok(ExitCode::from(1))
        }
    }
}

fn print_summary(v: &ValidatedRequest) {
    println!("scenario: {}", scenario_name(&v.scenario));
    println!("media: {}", media_name(v.media));
    println!("permissions needed: {}", v.required_permissions);
}

fn scenario_name(s: &Scenario) -> String {
    match s {
        Scenario::PeerToPeer => "peer-to-peer".into(),
        Scenario::GroupCall { targets } => format!("group call ({targets} targets)"),
        Scenario::MeetingJoin { meeting, as_guest } => format!(
            "{} meeting join{}",
            format!("{meeting:?}").to_lowercase(),
            if *as_guest { " as guest" } else { "" }
        ),
        Scenario::Pstn => "PSTN".into(),
        other => format!("{other:?}"),
    }
}

fn media_name(m: MediaHosting) -> &'static str {
    match m {
        MediaHosting::Service => "service-hosted",
        MediaHosting::App => "app-hosted",
    }
}

fn permissions_json(p: &PermissionRequirement) -> Value {
    let names = |list: &[signalling::Permission]| -> Vec<&'static str> {
        list.iter().map(|p| p.as_str()).collect()
    };
    json!({ "anyOf": names(&p.any_of), "allOf": names(&p.all_of) })
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}
