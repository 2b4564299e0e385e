//! `steerdns man`: the steerdns(1) man page, generated from the same clap definitions as
//! `--help` (part of the binary, not the library).
//!
//! One page for the whole tool, so `man steerdns` shows every command with its flags and a
//! search for a flag finds it. clap_mangen renders the top of the page and each command's
//! synopsis and options; its own subcommand list would point at one page per command
//! (steerdns-serve(1), ...), which we do not install, so the COMMANDS section is built here.

use std::io::{self, Write};

use clap::Command;
use clap_mangen::Man;
use roff::{Roff, bold, roman};

/// Write the page as roff.
pub fn render(mut cmd: Command, out: &mut dyn Write) -> io::Result<()> {
    cmd.build();
    let top = Man::new(cmd.clone());
    top.render_title(out)?;
    top.render_name_section(out)?;
    top.render_synopsis_section(out)?;
    top.render_description_section(out)?;
    top.render_options_section(out)?;
    let mut heading = Roff::new();
    heading.control("SH", ["COMMANDS"]);
    heading.text([roman(
        "Each command with its own arguments; the OPTIONS above apply to all of them.",
    )]);
    write_body(out, &heading)?;
    for sub in visible_subcommands(&cmd) {
        command_section(out, sub)?;
    }
    let mut tail = Roff::new();
    tail.control("SH", ["ENVIRONMENT"]);
    for (name, what) in ENVIRONMENT {
        tail.control("TP", [])
            .text([bold(*name)])
            .text([roman(*what)]);
    }
    tail.control("SH", ["SIGNALS"]);
    tail.control("TP", []).text([bold("SIGHUP")]).text([roman(
        "serve: reload the config, zones, policies and GeoIP databases; a reload that fails keeps the last good configuration. Listen addresses need a restart.",
    )]);
    tail.control("TP", [])
        .text([bold("SIGTERM, SIGINT")])
        .text([roman("Stop the listeners and exit.")]);
    write_body(out, &tail)?;
    top.render_version_section(out)
}

/// Environment variables the binary reads (listed here, not on a clap argument, because the
/// library reads them, not the argument parser).
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "RUST_LOG",
        "Log level and filters, e.g. info or steerdns=debug (default info).",
    ),
    (
        "NO_COLOR",
        "Set: no colour in text logs even on a terminal.",
    ),
    (
        steerdns::app::TOKEN_ENV,
        "The admin API token; wins over [admin] token_file.",
    ),
    (
        steerdns::app::PROBE_TOKEN_ENV,
        "The probe token; wins over [admin] probe_token_file and --token-file.",
    ),
    (
        steerdns::app::READ_TOKEN_ENV,
        "The read-only token; wins over [admin] read_token_file.",
    ),
    (
        steerdns::app::RUM_SECRET_ENV,
        "The RUM beacon secret; wins over [rum] secret_file.",
    ),
];

fn visible_subcommands(cmd: &Command) -> impl Iterator<Item = &Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

/// `.SS steerdns <command>`: what it does, its synopsis, its options; then its own
/// subcommands (`policy export`, ...), each a section of its own.
fn command_section(out: &mut dyn Write, cmd: &Command) -> io::Result<()> {
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    let mut head = Roff::new();
    head.control("SS", [name]);
    if let Some(about) = cmd.get_long_about().or_else(|| cmd.get_about()) {
        for line in about.to_string().lines().filter(|l| !l.trim().is_empty()) {
            head.text([roman(line)]);
        }
    }
    write_body(out, &head)?;
    // The global flags are described once, at the top.
    let mut own = cmd.clone();
    for global in cmd.get_arguments().filter(|a| a.is_global_set()) {
        own = own.mut_arg(global.get_id().clone(), |a| a.hide(true));
    }
    let man = Man::new(own);
    let mut part = Vec::new();
    man.render_synopsis_section(&mut part)?;
    man.render_options_section(&mut part)?;
    out.write_all(demote(&String::from_utf8_lossy(&part)).as_bytes())?;
    for sub in visible_subcommands(cmd) {
        command_section(out, sub)?;
    }
    Ok(())
}

/// A roff fragment without the apostrophe preamble that each rendering starts with (the page
/// has it once, from its title).
fn write_body(out: &mut dyn Write, roff: &Roff) -> io::Result<()> {
    let mut buf = Vec::new();
    roff.to_writer(&mut buf)?;
    out.write_all(strip_preamble(&String::from_utf8_lossy(&buf)).as_bytes())
}

fn strip_preamble(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with(".ie \\n(.g .ds Aq") && !l.starts_with(".el .ds Aq"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A command's SYNOPSIS and OPTIONS sections, turned into paragraphs inside its `.SS` (a page
/// has one of each `.SH`).
fn demote(text: &str) -> String {
    strip_preamble(text)
        .lines()
        .filter_map(|l| match l {
            ".SH SYNOPSIS" => Some(".PP".to_owned()),
            ".SH OPTIONS" => None,
            l if l.starts_with(".SH ") => Some(format!(".PP\n{}", &l[4..])),
            l => Some(l.to_owned()),
        })
        .map(|l| format!("{l}\n"))
        .collect()
}
