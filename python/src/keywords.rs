//! The keyword arguments of `Server`, `Client` and `Worker` as the type
//! stubs' generator (`python/stubs.py`) reads them: each program's own
//! flags, from its clap definition, less those the class takes itself or
//! refuses. So the stubs say exactly what the parser takes.

use clap::{Arg, ArgAction, CommandFactory};
use framelink::cli::{ClientOpts, ServerOpts, WorkerOpts};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::any::TypeId;

/// Flags no class takes as keywords: the programs' own (`generate` writes
/// a man page or completions and exits).
const NEVER: &[&str] = &["help", "version", "generate"];

/// `(keyword, annotation, default, help)` for each keyword argument of
/// class `class`, in the program's order: the annotation and the default
/// as Python source (`...` when the default is not a plain value).
#[pyfunction]
#[pyo3(name = "_keywords")]
pub(crate) fn keywords(class: &str) -> PyResult<Vec<(String, String, String, String)>> {
    let (command, own): (clap::Command, &[&str]) = match class {
        "Server" => (ServerOpts::command(), crate::server::NOT_KEYWORDS),
        "Client" => (ClientOpts::command(), crate::client::NOT_KEYWORDS),
        "Worker" => (WorkerOpts::command(), crate::worker::NOT_KEYWORDS),
        other => {
            return Err(PyValueError::new_err(format!(
                "no class {other:?}: Server, Client or Worker"
            )))
        }
    };
    Ok(command
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| Some((a, a.get_long()?.replace('-', "_"))))
        .filter(|(_, k)| !NEVER.contains(&k.as_str()) && !own.contains(&k.as_str()))
        .map(|(a, keyword)| {
            let help = a
                .get_help()
                .map(|h| h.to_string())
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or("")
                .trim_end_matches('.')
                .to_string();
            let help = match help.char_indices().nth(HELP_CHARS) {
                Some((cut, _)) => format!("{}…", help[..cut].trim_end()),
                None => help,
            };
            (keyword, annotation(a), default(a), help)
        })
        .collect())
}

/// The longest help shown beside a keyword in the stubs.
const HELP_CHARS: usize = 96;

enum Kind {
    Bool,
    Int,
    Float,
    Str,
    Choice(Vec<String>),
    /// Parsed from text by a parser of the program's own (an address, a
    /// duration, a size): any value whose `str()` it takes.
    Text,
}

fn kind(arg: &Arg) -> Kind {
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return Kind::Bool;
    }
    let choices: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|p| !p.is_hide_set())
        .map(|p| p.get_name().to_string())
        .collect();
    if !choices.is_empty() {
        return Kind::Choice(choices);
    }
    let t = arg.get_value_parser().type_id();
    let is = |ids: &[TypeId]| ids.iter().any(|id| t == *id);
    if is(&[
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<i32>(),
        TypeId::of::<i64>(),
    ]) {
        Kind::Int
    } else if is(&[TypeId::of::<f64>(), TypeId::of::<f32>()]) {
        Kind::Float
    } else if is(&[TypeId::of::<String>(), TypeId::of::<std::path::PathBuf>()]) {
        Kind::Str
    } else {
        Kind::Text
    }
}

fn annotation(arg: &Arg) -> String {
    let one = match kind(arg) {
        Kind::Bool => "bool".to_string(),
        Kind::Int => "int".to_string(),
        Kind::Float => "float".to_string(),
        Kind::Str => "str".to_string(),
        Kind::Text => "Union[str, int, float]".to_string(),
        Kind::Choice(c) => format!(
            "Literal[{}]",
            c.iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    if matches!(arg.get_action(), ArgAction::Append) {
        format!("Union[{one}, Sequence[{one}]]")
    } else {
        one
    }
}

fn default(arg: &Arg) -> String {
    let kind = kind(arg);
    if matches!(kind, Kind::Bool) {
        return "False".into();
    }
    let [value] = arg.get_default_values() else {
        return "...".into();
    };
    let Some(v) = value.to_str() else {
        return "...".into();
    };
    match kind {
        Kind::Int if v.parse::<i64>().is_ok() => v.to_string(),
        Kind::Float if v.parse::<f64>().is_ok_and(f64::is_finite) => match v.contains('.') {
            true => v.to_string(),
            false => format!("{v}.0"),
        },
        Kind::Str | Kind::Choice(_) | Kind::Text
            if v.chars().all(|c| c.is_ascii_graphic() || c == ' ') && !v.contains(['"', '\\']) =>
        {
            format!("{v:?}")
        }
        _ => "...".into(),
    }
}
