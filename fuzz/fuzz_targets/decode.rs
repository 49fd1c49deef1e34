//! The ring-buffer decoder on arbitrary bytes: it must never panic, and every
//! event it accepts must survive the trip through the log (JSON Lines and
//! back) unchanged.
#![no_main]

use crashtrace::{
    decode::decode,
    record::{EventRecord, Line, Record},
    report::reader::parse_line,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = decode(data) else { return };
    let line = Line::new(Record::Event(EventRecord { wall_ns: 1, chain: None, event }));
    let json = line.to_json();
    match parse_line(json.as_bytes()) {
        Ok(back) => assert_eq!(back, line, "the event changed through the log: {json}"),
        Err(e) => panic!("a decoded event does not read back from the log ({e}): {json}"),
    }
});
