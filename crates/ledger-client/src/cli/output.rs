//! Text and JSON renderings shared by the commands.

use serde::Serialize;

use crate::types::{Contract, Event, Transaction, TransactionResult};

/// Prints `value` as one line of JSON.
pub fn json_line(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// A contract id shortened for people (ids are 64 hex digits).
pub fn short(id: &str) -> String {
    if id.len() > 12 {
        format!("{}…", &id[..12])
    } else {
        id.to_owned()
    }
}

/// One line for a contract: template, short id, payload.
pub fn contract_line(c: &Contract) -> String {
    format!(
        "{:<20} {:<14} {}",
        c.template_id,
        short(&c.contract_id),
        c.payload
    )
}

/// The lines describing what a submitted command did.
pub fn result_lines(r: &TransactionResult) -> Vec<String> {
    let mut lines = vec![format!(
        "transaction {} at offset {} (command {})",
        short(&r.update_id),
        r.offset,
        r.command_id
    )];
    for x in &r.exercised {
        lines.push(format!(
            "  exercised {} {}.{} by {} -> {}",
            short(&x.contract_id),
            x.template_id,
            x.choice,
            x.acting_parties.join(","),
            x.result
        ));
    }
    for a in &r.archived {
        lines.push(format!(
            "  archived  {:<20} {}",
            a.template_id,
            short(&a.contract_id)
        ));
    }
    for c in &r.created {
        lines.push(format!("  created   {}", contract_line(c)));
    }
    lines
}

/// The lines of a flat transaction from the update stream.
pub fn transaction_lines(t: &Transaction) -> Vec<String> {
    let mut lines = vec![format!(
        "offset {} transaction {}{}",
        t.offset,
        short(&t.update_id),
        if t.command_id.is_empty() {
            String::new()
        } else {
            format!(" (command {})", t.command_id)
        }
    )];
    for e in &t.events {
        lines.push(match e {
            Event::Created(c) => format!("  created   {}", contract_line(c)),
            Event::Archived(a) => {
                format!(
                    "  archived  {:<20} {}",
                    a.template_id,
                    short(&a.contract_id)
                )
            }
        });
    }
    lines
}

pub fn print_lines(lines: &[String]) {
    for l in lines {
        println!("{l}");
    }
}
