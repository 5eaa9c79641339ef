//! Every command body the API parses, from arbitrary bytes: the first byte picks the
//! command, the rest is the body. Parsing must answer (a value or a 400/422), never panic.
#![no_main]

use command_side::bodies::{COMMANDS, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let command = COMMANDS[usize::from(pick) % COMMANDS.len()];
    let _ = parse(command, body);
});
