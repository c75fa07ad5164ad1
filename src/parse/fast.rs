//! A fast path for the plain YAML that tools emit (`kubectl -o yaml|json`,
//! `helm template`, generators): block mappings and sequences, flow
//! collections, single-line plain and quoted scalars, comments.
//!
//! It produces exactly the events libyaml would (same values, styles and
//! line/column marks: a differential test checks this) for one document, or
//! gives up with `None` at the first thing outside that subset (anchors,
//! tags, block scalars, escapes, multi-line scalars, tabs, non-ASCII, ...,
//! and every syntax error). The caller then parses that document with
//! libyaml, so the fast path never decides what is valid and never writes an
//! error message. It parses 1.8-3.3x faster than libyaml, which would
//! otherwise dominate the time of loading 100,000 Services
//! (docs/BENCHMARKS.md, "YAML layer").

use super::yaml::{Event, Mark};

/// Longest simple key libyaml accepts.
const MAX_KEY: usize = 1024;
/// The fast path recurses; deeper documents go to libyaml and the
/// iterative tree builder, which report the depth limit.
const MAX_DEPTH: usize = 64;

/// Receives the fast path's events as they are found, so a big document
/// never exists as a list of events. Returning None stops the fast path
/// (which then returns None too).
pub(super) trait Emit {
    fn emit(&mut self, ev: Event) -> Option<()>;
}

impl Emit for Vec<Event> {
    fn emit(&mut self, ev: Event) -> Option<()> {
        self.push(ev);
        Some(())
    }
}

/// Events of the single document in `text` (a slice that starts at a line
/// start and holds at most one `---`, on its first line), or None. Returns
/// the number of newlines in `text`. Events already emitted when it gives up
/// are libyaml's events for a prefix of the document (the caller undoes them).
pub(super) fn document<E: Emit>(text: &str, out: &mut E) -> Option<u64> {
    let b = text.as_bytes();
    // Printable ASCII and newlines only: no tabs, CR, control characters or
    // Unicode line breaks, and columns equal byte offsets.
    if !b.iter().all(|&c| (0x20..0x7f).contains(&c) || c == b'\n') {
        return None;
    }
    let mut p = Fast { b, pos: 0, line: 0, line_start: 0, indent: None, depth: 0, out };
    p.document()?;
    // document() only succeeds after reading to the end of the text.
    Some(p.line)
}

struct Fast<'a, E: Emit> {
    b: &'a [u8],
    pos: usize,
    line: u64,
    line_start: usize,
    /// Column of the content at `pos` when `pos` is at a line's first
    /// non-blank character; None at the end of the text.
    indent: Option<usize>,
    depth: usize,
    out: &'a mut E,
}

fn is_ws_or_eol(c: Option<u8>) -> bool {
    matches!(c, None | Some(b' ' | b'\n'))
}

fn is_flow_indicator(c: u8) -> bool {
    matches!(c, b',' | b'[' | b']' | b'{' | b'}')
}

impl<E: Emit> Fast<'_, E> {
    fn at(&self, i: usize) -> Option<u8> {
        self.b.get(i).copied()
    }
    fn cur(&self) -> Option<u8> {
        self.at(self.pos)
    }
    fn mark(&self, pos: usize) -> Mark {
        Mark { line: self.line, col: (pos - self.line_start) as u64 }
    }
    fn col(&self) -> usize {
        self.pos - self.line_start
    }

    /// From a line start: skips blank and comment-only lines, stops at the
    /// first content character and records its column (None at the end).
    fn next_content(&mut self) {
        loop {
            let start = self.pos;
            while self.cur() == Some(b' ') {
                self.pos += 1;
            }
            match self.cur() {
                None => {
                    self.indent = None;
                    return;
                }
                Some(b'\n') => self.newline(),
                Some(b'#') => {
                    self.skip_to_eol();
                    if self.cur() == Some(b'\n') {
                        self.newline();
                    }
                }
                Some(_) => {
                    self.indent = Some(self.pos - start);
                    return;
                }
            }
        }
    }

    fn newline(&mut self) {
        self.pos += 1;
        self.line += 1;
        self.line_start = self.pos;
    }

    fn skip_to_eol(&mut self) {
        while let Some(c) = self.cur() {
            if c == b'\n' {
                break;
            }
            self.pos += 1;
        }
    }

    fn skip_spaces(&mut self) {
        while self.cur() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// The rest of the line must be blank or a comment; moves to the next
    /// content line.
    fn end_line(&mut self) -> Option<()> {
        let before = self.pos;
        self.skip_spaces();
        match self.cur() {
            None => {}
            Some(b'\n') => self.newline(),
            // A comment needs white space before it.
            Some(b'#') if self.pos > before || self.at(self.pos.wrapping_sub(1)) == Some(b' ') => {
                self.skip_to_eol();
                if self.cur() == Some(b'\n') {
                    self.newline();
                }
            }
            _ => return None,
        }
        self.next_content();
        Some(())
    }

    fn document(&mut self) -> Option<()> {
        let explicit = self.b.starts_with(b"---") && is_ws_or_eol(self.at(3));
        let doc_mark = Mark { line: 0, col: 0 };
        if explicit {
            self.pos = 3;
            self.end_line()?;
        } else {
            self.next_content();
        }
        let Some(indent) = self.indent else {
            if explicit {
                // An empty document: libyaml's empty scalar sits where the
                // next token (the end of this text) starts.
                let end = self.mark(self.pos);
                self.out.emit(Event::DocumentStart(doc_mark))?;
                self.out.emit(Event::Scalar {
                    anchor: None,
                    tag: None,
                    value: String::new(),
                    plain: true,
                    mark: end,
                })?;
                self.out.emit(Event::DocumentEnd)?;
            }
            return Some(());
        };
        if self.b[self.pos..].starts_with(b"...") || self.b[self.pos..].starts_with(b"---") {
            return None;
        }
        self.out.emit(Event::DocumentStart(if explicit { doc_mark } else { self.mark(self.pos) }))?;
        self.node(indent, -1, false)?;
        if self.indent.is_some() {
            return None;
        }
        self.out.emit(Event::DocumentEnd)?;
        Some(())
    }

    /// A block node starting at `pos` (column `col`), inside a block
    /// collection at column `parent` (-1 for the root). `inline` is true for
    /// a mapping value on the key's line, where block collections cannot start.
    fn node(&mut self, col: usize, parent: isize, inline: bool) -> Option<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let r = self.node_inner(col, parent, inline);
        self.depth -= 1;
        r
    }

    fn node_inner(&mut self, col: usize, parent: isize, inline: bool) -> Option<()> {
        let c = self.cur()?;
        match c {
            b'-' if is_ws_or_eol(self.at(self.pos + 1)) => {
                if inline {
                    return None;
                }
                self.block_sequence(col)
            }
            b'[' | b'{' => {
                if c == b'[' {
                    self.flow_sequence(parent)?;
                } else {
                    self.flow_mapping(parent)?;
                }
                // A flow collection used as a key is outside the subset.
                self.skip_spaces();
                if self.cur() == Some(b':') {
                    return None;
                }
                self.end_line()?;
                self.no_continuation(parent)
            }
            _ => {
                if self.line_is_key()? {
                    if inline {
                        return None;
                    }
                    return self.block_mapping(col);
                }
                let start = self.pos;
                let (value, plain) = self.block_scalar_value()?;
                self.out.emit(Event::Scalar { anchor: None, tag: None, value, plain, mark: self.mark(start) })?;
                self.end_line()?;
                self.no_continuation(parent)
            }
        }
    }

    /// After a single-line value, a deeper line would continue it (a
    /// multi-line scalar) or be an error: both are left to libyaml.
    fn no_continuation(&self, parent: isize) -> Option<()> {
        match self.indent {
            Some(n) if n as isize > parent => None,
            _ => Some(()),
        }
    }

    /// Whether the content at `pos` is `KEY: ...` (without consuming it).
    fn line_is_key(&mut self) -> Option<bool> {
        let save = self.pos;
        let is_key = self.scan_key().is_some();
        self.pos = save;
        Some(is_key)
    }

    /// Scans `KEY:` at `pos`; on success `pos` is just after the colon.
    fn scan_key(&mut self) -> Option<(String, bool)> {
        let start = self.pos;
        let (value, plain) = match self.cur()? {
            b'"' => (self.double_quoted()?, false),
            b'\'' => (self.single_quoted()?, false),
            c => {
                if !self.plain_start_ok(c, false) {
                    return None;
                }
                // Up to ": " / ":\n"; a " #" first means no key.
                let mut i = self.pos;
                loop {
                    match self.at(i) {
                        None | Some(b'\n') => return None,
                        Some(b':') if is_ws_or_eol(self.at(i + 1)) => break,
                        Some(b'#') if self.at(i.wrapping_sub(1)) == Some(b' ') => return None,
                        _ => i += 1,
                    }
                }
                let value = trim_end(&self.b[self.pos..i]);
                self.pos = i;
                (value, true)
            }
        };
        if !plain {
            self.skip_spaces();
            if self.cur() != Some(b':') || !is_ws_or_eol(self.at(self.pos + 1)) {
                return None;
            }
        }
        if self.pos - start > MAX_KEY {
            return None;
        }
        self.pos += 1;
        Some((value, plain))
    }

    fn plain_start_ok(&self, c: u8, flow: bool) -> bool {
        match c {
            // libyaml reads `?` and `:` as indicators anywhere in flow context.
            b'?' | b':' if flow => false,
            b'-' | b'?' | b':' => {
                let next = self.at(self.pos + 1);
                !(is_ws_or_eol(next) || (flow && next.is_some_and(is_flow_indicator)))
            }
            b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'\'' | b'"' | b'%' | b'@'
            | b'`' => false,
            _ => true,
        }
    }

    /// A plain or quoted scalar in block context, alone on the rest of its line.
    fn block_scalar_value(&mut self) -> Option<(String, bool)> {
        match self.cur()? {
            b'"' => Some((self.double_quoted()?, false)),
            b'\'' => Some((self.single_quoted()?, false)),
            c => {
                if !self.plain_start_ok(c, false) {
                    return None;
                }
                let mut i = self.pos;
                loop {
                    match self.at(i) {
                        None | Some(b'\n') => break,
                        // "a: b: c" is an error; leave it to libyaml.
                        Some(b':') if is_ws_or_eol(self.at(i + 1)) => return None,
                        Some(b'#') if self.at(i.wrapping_sub(1)) == Some(b' ') => break,
                        _ => i += 1,
                    }
                }
                let value = trim_end(&self.b[self.pos..i]);
                self.pos = i;
                Some((value, true))
            }
        }
    }

    /// `"..."` on one line without escapes.
    fn double_quoted(&mut self) -> Option<String> {
        let start = self.pos + 1;
        let mut i = start;
        loop {
            match self.at(i)? {
                b'"' => break,
                b'\\' | b'\n' => return None,
                _ => i += 1,
            }
        }
        let value = std::str::from_utf8(&self.b[start..i]).ok()?.to_owned();
        self.pos = i + 1;
        Some(value)
    }

    /// `'...'` on one line; `''` is a quote.
    fn single_quoted(&mut self) -> Option<String> {
        let mut i = self.pos + 1;
        let mut value = Vec::new();
        loop {
            match self.at(i)? {
                b'\'' if self.at(i + 1) == Some(b'\'') => {
                    value.push(b'\'');
                    i += 2;
                }
                b'\'' => break,
                b'\n' => return None,
                c => {
                    value.push(c);
                    i += 1;
                }
            }
        }
        self.pos = i + 1;
        String::from_utf8(value).ok()
    }

    fn block_mapping(&mut self, col: usize) -> Option<()> {
        self.out.emit(Event::MappingStart { anchor: None, mark: self.mark(self.pos) })?;
        loop {
            let key_mark = self.mark(self.pos);
            let (key, plain) = self.scan_key()?;
            self.out.emit(Event::Scalar { anchor: None, tag: None, value: key, plain, mark: key_mark })?;
            let after_colon = self.mark(self.pos);
            self.skip_spaces();
            match self.cur() {
                None | Some(b'\n' | b'#') => {
                    if self.cur() == Some(b'#') && self.mark(self.pos).col == after_colon.col {
                        return None;
                    }
                    self.end_line()?;
                    match self.indent {
                        Some(n) if n > col => self.node(n, col as isize, false)?,
                        Some(n) if n == col && self.cur() == Some(b'-') && is_ws_or_eol(self.at(self.pos + 1)) => {
                            self.block_sequence(col)?
                        }
                        _ => self.empty_scalar(after_colon)?,
                    }
                }
                Some(_) => {
                    let vcol = self.col();
                    self.node(vcol, col as isize, true)?;
                }
            }
            match self.indent {
                None => break,
                Some(n) if n < col => break,
                Some(n) if n == col => {
                    if self.cur() == Some(b'-') && is_ws_or_eol(self.at(self.pos + 1)) {
                        return None;
                    }
                }
                Some(_) => return None,
            }
        }
        self.out.emit(Event::MappingEnd)?;
        Some(())
    }

    fn empty_scalar(&mut self, mark: Mark) -> Option<()> {
        self.out.emit(Event::Scalar { anchor: None, tag: None, value: String::new(), plain: true, mark })
    }

    /// Entries `- ...` at column `col` (the first `-` is at `pos`).
    fn block_sequence(&mut self, col: usize) -> Option<()> {
        self.out.emit(Event::SequenceStart { anchor: None, mark: self.mark(self.pos) })?;
        loop {
            self.pos += 1;
            let after_dash = self.mark(self.pos);
            self.skip_spaces();
            match self.cur() {
                None | Some(b'\n' | b'#') => {
                    if self.cur() == Some(b'#') && self.mark(self.pos).col == after_dash.col {
                        return None;
                    }
                    self.end_line()?;
                    match self.indent {
                        Some(n) if n > col => self.node(n, col as isize, false)?,
                        _ => self.empty_scalar(after_dash)?,
                    }
                }
                Some(_) => {
                    let icol = self.col();
                    self.node(icol, col as isize, false)?;
                }
            }
            match self.indent {
                Some(n) if n == col && self.cur() == Some(b'-') && is_ws_or_eol(self.at(self.pos + 1)) => {}
                Some(n) if n > col => return None,
                _ => break,
            }
        }
        self.out.emit(Event::SequenceEnd)?;
        Some(())
    }

    /// Skips spaces, newlines and comments inside a flow collection. Lines
    /// must stay indented deeper than the enclosing block collection.
    fn flow_ws(&mut self, parent: isize) -> Option<()> {
        loop {
            let before = self.pos;
            self.skip_spaces();
            match self.cur() {
                Some(b'\n') => {
                    self.newline();
                    self.skip_spaces();
                    if (self.col() as isize) <= parent && self.cur().is_some_and(|c| c != b'\n') {
                        return None;
                    }
                    self.pos = self.line_start;
                }
                Some(b'#')
                    if self.pos > before
                        || self.pos == self.line_start
                        || self.at(self.pos.wrapping_sub(1)) == Some(b' ') =>
                {
                    self.skip_to_eol();
                }
                _ => return Some(()),
            }
        }
    }

    fn flow_sequence(&mut self, parent: isize) -> Option<()> {
        self.out.emit(Event::SequenceStart { anchor: None, mark: self.mark(self.pos) })?;
        self.pos += 1;
        loop {
            self.flow_ws(parent)?;
            if self.cur()? == b']' {
                break;
            }
            self.flow_node(parent)?;
            self.flow_ws(parent)?;
            match self.cur()? {
                b',' => self.pos += 1,
                b']' => break,
                _ => return None,
            }
        }
        self.pos += 1;
        self.out.emit(Event::SequenceEnd)?;
        Some(())
    }

    fn flow_mapping(&mut self, parent: isize) -> Option<()> {
        self.out.emit(Event::MappingStart { anchor: None, mark: self.mark(self.pos) })?;
        self.pos += 1;
        loop {
            self.flow_ws(parent)?;
            if self.cur()? == b'}' {
                break;
            }
            // Key: a quoted scalar (then ':' may touch the value, JSON style)
            // or a plain one followed by ": ".
            let key_mark = self.mark(self.pos);
            let (key, plain) = match self.cur()? {
                b'"' => (self.double_quoted()?, false),
                b'\'' => (self.single_quoted()?, false),
                c => {
                    if !self.plain_start_ok(c, true) {
                        return None;
                    }
                    let start = self.pos;
                    let mut i = self.pos;
                    loop {
                        match self.at(i)? {
                            b':' if self.at(i + 1) == Some(b' ') => break,
                            b'\n' | b':' | b'#' => return None,
                            c if is_flow_indicator(c) => return None,
                            _ => i += 1,
                        }
                    }
                    self.pos = i;
                    (trim_end(&self.b[start..i]), true)
                }
            };
            if self.pos - key_mark.col as usize - self.line_start > MAX_KEY {
                return None;
            }
            self.skip_spaces();
            if self.cur()? != b':' {
                return None;
            }
            self.pos += 1;
            if plain && !is_ws_or_eol(self.cur()) {
                return None;
            }
            self.out.emit(Event::Scalar { anchor: None, tag: None, value: key, plain, mark: key_mark })?;
            self.flow_ws(parent)?;
            if matches!(self.cur()?, b',' | b'}') {
                return None;
            }
            self.flow_node(parent)?;
            self.flow_ws(parent)?;
            match self.cur()? {
                b',' => self.pos += 1,
                b'}' => break,
                _ => return None,
            }
        }
        self.pos += 1;
        self.out.emit(Event::MappingEnd)?;
        Some(())
    }

    fn flow_node(&mut self, parent: isize) -> Option<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let r = self.flow_node_inner(parent);
        self.depth -= 1;
        r
    }

    fn flow_node_inner(&mut self, parent: isize) -> Option<()> {
        let mark = self.mark(self.pos);
        match self.cur()? {
            b'[' => self.flow_sequence(parent),
            b'{' => self.flow_mapping(parent),
            b'"' | b'\'' => {
                let value = if self.cur()? == b'"' { self.double_quoted()? } else { self.single_quoted()? };
                // `"k": v` inside a sequence is a single-pair mapping.
                self.skip_spaces();
                if self.cur() == Some(b':') {
                    return None;
                }
                self.out.emit(Event::Scalar { anchor: None, tag: None, value, plain: false, mark })?;
                Some(())
            }
            c => {
                if !self.plain_start_ok(c, true) {
                    return None;
                }
                let start = self.pos;
                let mut i = self.pos;
                loop {
                    match self.at(i) {
                        None | Some(b'\n') => break,
                        Some(b':') => return None,
                        Some(b'#') if self.at(i.wrapping_sub(1)) == Some(b' ') => break,
                        Some(c) if is_flow_indicator(c) => break,
                        _ => i += 1,
                    }
                }
                self.pos = i;
                let value = trim_end(&self.b[start..i]);
                // A plain scalar continued on the next line is outside the subset.
                if matches!(self.cur(), None | Some(b'\n' | b'#')) {
                    let save = (self.pos, self.line, self.line_start);
                    self.flow_ws(parent)?;
                    let next = self.cur();
                    (self.pos, self.line, self.line_start) = save;
                    if !next.is_some_and(|c| matches!(c, b',' | b']' | b'}')) {
                        return None;
                    }
                }
                self.out.emit(Event::Scalar { anchor: None, tag: None, value, plain: true, mark })?;
                Some(())
            }
        }
    }
}

fn trim_end(bytes: &[u8]) -> String {
    let end = bytes.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1);
    // The document was checked to be ASCII, so this never loses anything.
    std::str::from_utf8(&bytes[..end]).map(str::to_owned).unwrap_or_default()
}
