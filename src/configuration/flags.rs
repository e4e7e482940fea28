//! The command-line flags of the settings declared with `cli = "…"` (global, so they work
//! before or after a subcommand).

use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches};

use super::specs;

/// `(setting name, value)` for each setting given on the command line.
#[derive(Debug, Clone, Default)]
pub struct SettingFlags(pub Vec<(&'static str, String)>);

impl Args for SettingFlags {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for spec in specs() {
            let Some(flag) = spec.cli else { continue };
            let help = format!(
                "{} [env: {}] [default: {}]",
                spec.doc.replace('`', ""),
                spec.env,
                spec.default_text.replace('`', "")
            );
            let arg = Arg::new(spec.name).long(flag).global(true).help(help);
            cmd = cmd.arg(if spec.switch {
                arg.action(ArgAction::SetTrue)
            } else {
                arg.action(ArgAction::Set).value_name("VALUE")
            });
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for SettingFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = Self::default();
        flags.update_from_arg_matches(matches)?;
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for spec in specs().iter().filter(|s| s.cli.is_some()) {
            let value = if spec.switch {
                matches.get_flag(spec.name).then(|| "true".to_owned())
            } else {
                matches.get_one::<String>(spec.name).cloned()
            };
            if let Some(value) = value {
                self.0.retain(|(name, _)| *name != spec.name);
                self.0.push((spec.name, value));
            }
        }
        Ok(())
    }
}
