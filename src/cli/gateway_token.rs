//! `sipas gateway-token`: make a bearer token (or hash a given one) and print its
//! configuration entry.
use anyhow::{bail, Context, Result};

#[derive(clap::Args)]
pub struct GatewayTokenArgs {
    /// Who gets the token (logged instead of the token).
    #[arg(long, default_value = "province")]
    name: String,
    /// 2025 province codes the token may submit for (repeatable; `*` = all).
    #[arg(long = "province", default_value = "*")]
    provinces: Vec<String>,
    /// Hash this token (read from standard input: `-`) instead of making a new one.
    #[arg(long)]
    token: Option<String>,
}

pub fn run(args: GatewayTokenArgs) -> Result<()> {
    let token = match args.token.as_deref() {
        Some("-") => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim().to_owned()
        }
        Some(token) => token.to_owned(),
        None => {
            use std::io::Read;
            let mut bytes = [0u8; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut bytes))
                .context("reading /dev/urandom")?;
            hex::encode(bytes)
        }
    };
    if token.is_empty() {
        bail!("the token is empty");
    }
    if args.token.is_none() {
        println!("# token (give it to the province; it is not stored anywhere): {token}");
    }
    let provinces: Vec<String> = args.provinces.iter().map(|p| format!("{p:?}")).collect();
    println!(
        "[[gateway.tokens]]\nname = {:?}\nsha256 = \"{}\"\nprovinces = [{}]",
        args.name,
        sipas_stream::gateway::tokens::hash_token(&token),
        provinces.join(", ")
    );
    Ok(())
}
