// Package checklist holds checks of the production checklist that read a
// release's files, such as ScanMigrations, which finds the SQL migrations
// that are not additive-only.
package checklist

import (
	"flightdeck/internal/fsutil"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"
)

// Rules a migration Finding can break: statements that are not additive,
// so the release still live during a switch (and any rollback target)
// breaks against the migrated schema, or data is lost for good.
const (
	RuleDropTable     = "drop-table"     // DROP TABLE
	RuleDropSchema    = "drop-schema"    // DROP SCHEMA / DROP DATABASE
	RuleDropColumn    = "drop-column"    // ALTER TABLE .. DROP [COLUMN] ..
	RuleDropPartition = "drop-partition" // ALTER TABLE .. DROP PARTITION ..
	RuleRenameTable   = "rename-table"   // ALTER TABLE .. RENAME TO .., RENAME TABLE
	RuleRenameColumn  = "rename-column"  // ALTER TABLE .. RENAME [COLUMN] .. TO .., CHANGE
	RuleTypeChange    = "type-change"    // ALTER COLUMN .. [SET DATA] TYPE, MODIFY [COLUMN]
	RuleAddNotNull    = "add-not-null"   // ADD [COLUMN] .. NOT NULL without DEFAULT
	RuleSetNotNull    = "set-not-null"   // ALTER COLUMN .. SET NOT NULL
	RuleTruncate      = "truncate"       // TRUNCATE
)

// Finding is a destructive or non-additive statement in a migration file.
type Finding struct {
	// File is the migration file, as its path was given or globbed.
	File string
	// Line and Column (1-based, in characters) locate the start of the
	// statement.
	Line, Column int
	// Statement is the statement with comments removed and whitespace
	// collapsed, shortened when long.
	Statement string
	// Rule is one of the Rule constants.
	Rule string
	// Message says, for an SRE, why the statement breaks a zero-downtime
	// release and what to do instead.
	Message string
}

// String is the finding as file:line:column: statement — message.
func (f Finding) String() string {
	return fmt.Sprintf("%s:%d:%d: %s — %s", f.File, f.Line, f.Column, f.Statement, f.Message)
}

// ScanMigrations reads SQL migration files and reports every statement that
// is destructive or not additive: DROP TABLE (and SCHEMA/DATABASE), DROP
// COLUMN, renames of tables and columns, column type changes, a NOT NULL
// column added without a DEFAULT, SET NOT NULL, and TRUNCATE. Additive
// statements (CREATE TABLE, CREATE INDEX, a nullable column or one with a
// default) give nothing.
//
// Each path is a file, a directory (its *.sql files) or a glob pattern
// (filepath.Glob; a pattern matching nothing is not an error). A file named
// twice is scanned once. Keywords are matched case-insensitively across
// line breaks; comments (--, /* */, and # at the start of a line), string
// literals (including E'..' and $tag$..$tag$) and quoted identifiers never
// match. Findings are in the order of the paths, then of the statements.
func ScanMigrations(paths []string) ([]Finding, error) {
	files, err := migrationFiles(paths)
	if err != nil {
		return nil, err
	}
	var out []Finding
	for _, f := range files {
		data, err := fsutil.ReadFileLimit(f, maxMigration)
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", f, err)
		}
		out = append(out, scanSQL(f, string(data))...)
	}
	return out, nil
}

// maxMigration bounds one migration file scanned.
const maxMigration = 64 << 20

// migrationFiles expands paths into the files to scan, in order, once each.
func migrationFiles(paths []string) ([]string, error) {
	var files []string
	seen := map[string]bool{}
	add := func(f string) {
		if !seen[f] {
			seen[f] = true
			files = append(files, f)
		}
	}
	for _, p := range paths {
		if strings.ContainsAny(p, "*?[") {
			matches, err := filepath.Glob(p)
			if err != nil {
				return nil, fmt.Errorf("migration pattern %q: %w", p, err)
			}
			for _, m := range matches {
				if fi, err := os.Stat(m); err == nil && fi.Mode().IsRegular() {
					add(m)
				}
			}
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("migration file: %w", err)
		}
		if !fi.IsDir() {
			add(p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("reading migration directory: %w", err)
		}
		for _, e := range entries {
			if e.Type()&fs.ModeType == 0 && strings.EqualFold(filepath.Ext(e.Name()), ".sql") {
				add(filepath.Join(p, e.Name()))
			}
		}
	}
	return files, nil
}

// scanSQL returns the findings of one file's SQL text.
func scanSQL(file, src string) []Finding {
	var out []Finding
	eachStatement(src, func(st []token) {
		hits := checkStatement(st)
		if len(hits) == 0 {
			return
		}
		text := render(st)
		for _, h := range hits {
			out = append(out, Finding{
				File:      file,
				Line:      st[0].line,
				Column:    st[0].col,
				Statement: text,
				Rule:      h.rule,
				Message:   h.msg,
			})
		}
	})
	return out
}

// --- lexing ---------------------------------------------------------------

type tokKind int

const (
	tkWord   tokKind = iota // keyword or bare identifier
	tkQuoted                // "identifier" or `identifier`
	tkString                // string literal of any form
	tkNumber
	tkPunct // one character
)

type token struct {
	kind      tokKind
	text      string // as written
	word      string // upper case, for tkWord only
	line, col int
	start     int // byte offsets of text in the source
	end       int
	depth     int // parenthesis depth within the statement
}

// lexer splits SQL text into tokens, dropping whitespace and comments.
type lexer struct {
	src       string
	i         int
	line, col int
	lineStart bool // only whitespace since the last newline
}

func (lx *lexer) peek(off int) byte {
	if lx.i+off < len(lx.src) {
		return lx.src[lx.i+off]
	}
	return 0
}

// advance moves past n bytes, keeping line and column (in runes) right.
func (lx *lexer) advance(n int) {
	end := min(lx.i+n, len(lx.src))
	for lx.i < end {
		r, size := utf8.DecodeRuneInString(lx.src[lx.i:])
		lx.i += size
		if r == '\n' {
			lx.line++
			lx.col = 1
			lx.lineStart = true
		} else {
			lx.col++
		}
	}
}

// skipTo advances past the first occurrence of end, or to the end of input.
func (lx *lexer) skipTo(end string) {
	if k := strings.Index(lx.src[lx.i:], end); k >= 0 {
		lx.advance(k + len(end))
		return
	}
	lx.advance(len(lx.src) - lx.i)
}

// quoted advances past a literal opened by the quote at lx.i: a doubled
// quote stands for itself and, with backslash, \ escapes the next byte.
func (lx *lexer) quoted(q byte, backslash bool) {
	lx.advance(1)
	for lx.i < len(lx.src) {
		c := lx.src[lx.i]
		switch {
		case backslash && c == '\\':
			lx.advance(2)
		case c == q && lx.peek(1) == q:
			lx.advance(2)
		case c == q:
			lx.advance(1)
			return
		default:
			lx.advance(1)
		}
	}
}

func isWordStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= utf8.RuneSelf
}

func isWordByte(c byte) bool {
	return isWordStart(c) || c >= '0' && c <= '9' || c == '$'
}

// dollarTag returns the $tag$ opening a dollar-quoted string at lx.i, or "".
func (lx *lexer) dollarTag() string {
	j := lx.i + 1
	for j < len(lx.src) && (isWordStart(lx.src[j]) && lx.src[j] < utf8.RuneSelf || j > lx.i+1 && lx.src[j] >= '0' && lx.src[j] <= '9') {
		j++
	}
	if j < len(lx.src) && lx.src[j] == '$' {
		return lx.src[lx.i : j+1]
	}
	return ""
}

// next returns the next token, or false at the end of input.
func (lx *lexer) next() (token, bool) {
	for lx.i < len(lx.src) {
		c := lx.src[lx.i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v':
			lx.advance(1)
			continue
		case c == '-' && lx.peek(1) == '-':
			lx.skipTo("\n")
			continue
		case c == '/' && lx.peek(1) == '*':
			lx.advance(2)
			lx.skipTo("*/")
			continue
		case c == '#' && lx.lineStart:
			lx.skipTo("\n")
			continue
		}
		break
	}
	if lx.i >= len(lx.src) {
		return token{}, false
	}
	lx.lineStart = false
	start, t := lx.i, token{line: lx.line, col: lx.col}
	c := lx.src[lx.i]
	switch {
	case c == '\'':
		t.kind = tkString
		lx.quoted('\'', false)
	case c == '"' || c == '`':
		t.kind = tkQuoted
		lx.quoted(c, false)
	case c == '$' && lx.dollarTag() != "":
		t.kind = tkString
		tag := lx.dollarTag()
		lx.advance(len(tag))
		lx.skipTo(tag)
	case c >= '0' && c <= '9':
		t.kind = tkNumber
		for lx.i < len(lx.src) && (isWordByte(lx.src[lx.i]) || lx.src[lx.i] == '.') {
			lx.advance(1)
		}
	case isWordStart(c):
		j := lx.i
		for j < len(lx.src) && isWordByte(lx.src[j]) {
			j++
		}
		word := lx.src[lx.i:j]
		lx.advance(j - lx.i)
		if lx.peek(0) == '\'' && len(word) == 1 && strings.ContainsAny(word, "EeNnBbXx") {
			// A prefixed string: E'..' (backslash escapes), N'..', B'..', X'..'.
			t.kind = tkString
			lx.quoted('\'', word == "E" || word == "e")
			break
		}
		t.kind, t.word = tkWord, strings.ToUpper(word)
	default:
		t.kind = tkPunct
		_, size := utf8.DecodeRuneInString(lx.src[lx.i:])
		lx.advance(size)
	}
	t.text, t.start, t.end = lx.src[start:lx.i], start, lx.i
	return t, true
}

// eachStatement calls fn with each statement of src, a non-empty list of
// tokens; statements are split at semicolons outside strings and comments.
// The slice is reused: fn must not keep it.
func eachStatement(src string, fn func([]token)) {
	lx := &lexer{src: src, line: 1, col: 1, lineStart: true}
	var cur []token
	depth := 0
	for {
		t, ok := lx.next()
		if !ok {
			break
		}
		if t.kind == tkPunct && t.text == ";" {
			if len(cur) > 0 {
				fn(cur)
			}
			cur, depth = cur[:0], 0
			continue
		}
		if t.kind == tkPunct && t.text == ")" && depth > 0 {
			depth--
		}
		t.depth = depth
		if t.kind == tkPunct && t.text == "(" {
			depth++
		}
		cur = append(cur, t)
	}
	if len(cur) > 0 {
		fn(cur)
	}
}

// maxStatement bounds the length of Finding.Statement, in characters.
const maxStatement = 160

// render writes a statement back as one line: tokens written together stay
// together, and any space or comment between two becomes one space (none
// after "(" nor before "," and ")").
func render(toks []token) string {
	var b strings.Builder
	for i, t := range toks {
		if i > 0 {
			prev := toks[i-1]
			if prev.end != t.start && prev.text != "(" && t.text != "," && t.text != ")" {
				b.WriteByte(' ')
			}
		}
		b.WriteString(t.text)
		if b.Len() > maxStatement*utf8.UTFMax {
			break
		}
	}
	s := b.String()
	if utf8.RuneCountInString(s) > maxStatement {
		r := []rune(s)
		s = string(r[:maxStatement-1]) + "…"
	}
	return s
}

// --- rules ----------------------------------------------------------------

// hit is one rule broken by a statement.
type hit struct{ rule, msg string }

// is reports whether toks[i] is one of the keywords words.
func is(toks []token, i int, words ...string) bool {
	return i < len(toks) && toks[i].kind == tkWord && slices.Contains(words, toks[i].word)
}

// skip moves i past the keyword sequence words if it is there.
func skip(toks []token, i int, words ...string) int {
	for k, w := range words {
		if !is(toks, i+k, w) {
			return i
		}
	}
	return i + len(words)
}

// name reads a possibly qualified name (a.b."c") at i and returns it and
// the index after it; "" when there is none.
func name(toks []token, i int) (string, int) {
	var b strings.Builder
	for i < len(toks) && (toks[i].kind == tkWord || toks[i].kind == tkQuoted) {
		b.WriteString(toks[i].text)
		i++
		if i+1 < len(toks) && toks[i].text == "." && (toks[i+1].kind == tkWord || toks[i+1].kind == tkQuoted) {
			b.WriteByte('.')
			i++
			continue
		}
		break
	}
	return b.String(), i
}

func orSomething(s, what string) string {
	if s == "" {
		return what
	}
	return s
}

func checkStatement(toks []token) []hit {
	switch {
	case is(toks, 0, "TRUNCATE"):
		i := skip(toks, 1, "TABLE")
		i = skip(toks, i, "ONLY")
		tbl, _ := name(toks, i)
		return []hit{{RuleTruncate, fmt.Sprintf("deletes every row of %s, and a rollback of the code cannot bring them back: stop using the data in one release, then remove it in a later one after a backup", orSomething(tbl, "the table"))}}
	case is(toks, 0, "DROP") && is(toks, 1, "TABLE"):
		i := skip(toks, 2, "IF", "EXISTS")
		tbl, i := name(toks, i)
		for i+1 < len(toks) && toks[i].text == "," {
			var more string
			more, i = name(toks, i+1)
			tbl += ", " + more
		}
		return []hit{{RuleDropTable, fmt.Sprintf("drops table %s and its rows, which the old release still reads during the switch and a rollback cannot bring back: stop using the table in one release, then drop it (after a backup) in a later release", orSomething(tbl, "?"))}}
	case is(toks, 0, "DROP") && is(toks, 1, "SCHEMA", "DATABASE"):
		i := skip(toks, 2, "IF", "EXISTS")
		n, _ := name(toks, i)
		return []hit{{RuleDropSchema, fmt.Sprintf("drops %s %s with every table in it; the old release still reads them and a rollback cannot bring them back: retire its use in one release, drop it after a backup in a later one", strings.ToLower(toks[1].word), orSomething(n, "?"))}}
	case is(toks, 0, "RENAME") && is(toks, 1, "TABLE"):
		from, i := name(toks, 2)
		to := ""
		if is(toks, i, "TO") {
			to, _ = name(toks, i+1)
		}
		return []hit{renameTable(from, to)}
	case is(toks, 0, "ALTER") && is(toks, 1, "TABLE"):
		return alterTable(toks)
	}
	return nil
}

func renameTable(from, to string) hit {
	return hit{RuleRenameTable, fmt.Sprintf("renames table %s to %s, but the old release (live during the switch, and the rollback target) still uses the old name: create the new table, write to both, move the reads, then drop the old one in a later release", orSomething(from, "?"), orSomething(to, "a new name"))}
}

func alterTable(toks []token) []hit {
	i := skip(toks, 2, "IF", "EXISTS")
	i = skip(toks, i, "ONLY")
	tbl, i := name(toks, i)
	tbl = orSomething(tbl, "the table")
	if i < len(toks) && toks[i].text == "*" {
		i++
	}
	// Actions are separated by commas outside parentheses.
	var hits []hit
	start := i
	for j := i; j <= len(toks); j++ {
		if j == len(toks) || toks[j].kind == tkPunct && toks[j].text == "," && toks[j].depth == 0 {
			if j > start {
				hits = append(hits, alterAction(tbl, toks[start:j])...)
			}
			start = j + 1
		}
	}
	return hits
}

// constraintWords start actions on constraints and indexes, not columns.
var constraintWords = []string{"CONSTRAINT", "INDEX", "KEY", "PRIMARY", "FOREIGN", "UNIQUE", "CHECK", "FULLTEXT", "SPATIAL", "EXCLUDE"}

func alterAction(tbl string, a []token) []hit {
	switch {
	case is(a, 0, "DROP"):
		i := 1
		switch {
		case is(a, i, "PARTITION"):
			p, _ := name(a, i+1)
			return []hit{{RuleDropPartition, fmt.Sprintf("drops partition %s of %s with its rows, which a rollback cannot bring back: make sure no release reads them and back them up first", orSomething(p, "?"), tbl)}}
		case is(a, i, constraintWords...), is(a, i, "DEFAULT", "PERIOD", "SYSTEM"):
			return nil
		}
		i = skip(a, i, "COLUMN")
		i = skip(a, i, "IF", "EXISTS")
		col, _ := name(a, i)
		return []hit{{RuleDropColumn, fmt.Sprintf("drops column %s of %s, which the old release still reads; deploy the code that stops using it first, then drop it in a later release", orSomething(col, "?"), tbl)}}

	case is(a, 0, "RENAME"):
		switch {
		case is(a, 1, "TO", "AS"):
			to, _ := name(a, 2)
			return []hit{renameTable(tbl, to)}
		case is(a, 1, constraintWords...):
			return nil
		}
		i := skip(a, 1, "COLUMN")
		from, i := name(a, i)
		if !is(a, i, "TO") {
			// MySQL: RENAME new_name renames the table.
			return []hit{renameTable(tbl, from)}
		}
		to, _ := name(a, i+1)
		return []hit{renameColumn(tbl, from, to)}

	case is(a, 0, "ALTER"):
		if is(a, 1, constraintWords...) {
			return nil
		}
		i := skip(a, 1, "COLUMN")
		col, i := name(a, i)
		rest := a[i:]
		var hits []hit
		if slices.ContainsFunc(rest, func(t token) bool { return t.kind == tkWord && t.word == "TYPE" }) {
			hits = append(hits, typeChange(tbl, col))
		}
		for k := range rest {
			if is(rest, k, "SET") && is(rest, k+1, "NOT") && is(rest, k+2, "NULL") {
				hits = append(hits, hit{RuleSetNotNull, fmt.Sprintf("makes column %s of %s NOT NULL, so inserts by the old release that leave it empty fail: deploy code that always writes it and backfill first, then add the constraint in a later release", orSomething(col, "?"), tbl)})
				break
			}
		}
		return hits

	case is(a, 0, "MODIFY"):
		i := skip(a, 1, "COLUMN")
		col, _ := name(a, i)
		return []hit{typeChange(tbl, orSomething(col, "?"))}

	case is(a, 0, "CHANGE"):
		i := skip(a, 1, "COLUMN")
		from, i := name(a, i)
		to, _ := name(a, i)
		if to != "" && !strings.EqualFold(strings.Trim(from, "`\""), strings.Trim(to, "`\"")) {
			return []hit{renameColumn(tbl, from, to)}
		}
		return []hit{typeChange(tbl, orSomething(from, "?"))}

	case is(a, 0, "ADD"):
		i := skip(a, 1, "COLUMN")
		i = skip(a, i, "IF", "NOT", "EXISTS")
		if is(a, i, constraintWords...) || is(a, i, "PARTITION", "PERIOD", "SYSTEM") {
			return nil
		}
		if i < len(a) && a[i].text == "(" {
			// ADD (col def, col def): split the list at its top-level commas.
			var hits []hit
			depth := a[i].depth + 1
			start := i + 1
			for j := i + 1; j < len(a); j++ {
				end := a[j].text == ")" && a[j].depth == a[i].depth
				if end || a[j].text == "," && a[j].depth == depth {
					hits = append(hits, addColumn(tbl, a[start:j], depth)...)
					start = j + 1
				}
				if end {
					break
				}
			}
			return hits
		}
		return addColumn(tbl, a[i:], a[0].depth)
	}
	return nil
}

func renameColumn(tbl, from, to string) hit {
	return hit{RuleRenameColumn, fmt.Sprintf("renames column %s of %s to %s, but the old release (live during the switch, and the rollback target) still uses the old name: add the new column, write to both, backfill, move the reads, then drop the old one in a later release", orSomething(from, "?"), tbl, orSomething(to, "a new name"))}
}

func typeChange(tbl, col string) hit {
	return hit{RuleTypeChange, fmt.Sprintf("changes the definition (type) of column %s of %s; the old release may read or write values the new type rejects, and the rewrite can lock a large table: add a column of the new type, backfill, move the reads, then drop the old one in a later release", orSomething(col, "?"), tbl)}
}

// serialTypes get a value from a sequence, so they need no DEFAULT.
var serialTypes = []string{"SERIAL", "BIGSERIAL", "SMALLSERIAL", "SERIAL2", "SERIAL4", "SERIAL8"}

// addColumn checks one column definition (name type constraints...) whose
// own tokens are at depth.
func addColumn(tbl string, def []token, depth int) []hit {
	if is(def, 0, constraintWords...) {
		return nil
	}
	col, _ := name(def, 0)
	notNull, filled := false, false
	for k := range def {
		if def[k].depth != depth {
			continue
		}
		switch {
		case is(def, k, "NOT") && is(def, k+1, "NULL"):
			notNull = true
		case is(def, k, "DEFAULT", "GENERATED", "AUTO_INCREMENT", "IDENTITY", "AS"), is(def, k, serialTypes...):
			filled = true
		}
	}
	if !notNull || filled {
		return nil
	}
	return []hit{{RuleAddNotNull, fmt.Sprintf("adds NOT NULL column %s to %s without a DEFAULT: existing rows have no value and the old release's inserts, which do not know the column, fail; add it nullable or with a DEFAULT, and make it NOT NULL once every release writes it", orSomething(col, "?"), tbl)}}
}
