//! `sallyport user|session|keys` (being built with the issuer).

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {}
#[derive(Debug, clap::Subcommand)]
pub enum SessionCommand {}
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {}

pub async fn user(c: UserCommand) -> anyhow::Result<ExitCode> {
    match c {}
}
pub async fn session(c: SessionCommand) -> anyhow::Result<ExitCode> {
    match c {}
}
pub async fn keys(c: KeysCommand) -> anyhow::Result<ExitCode> {
    match c {}
}
