package checklist

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// at is an expected finding: its rule and where its statement starts.
type at struct {
	rule      string
	line, col int
}

func TestScanSQLRules(t *testing.T) {
	tests := []struct {
		name string
		sql  string
		want []at
		// msg, when set, must appear in the first finding's message.
		msg string
	}{
		// Additive statements give nothing.
		{"create table", "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);", nil, ""},
		{"create index", "CREATE INDEX CONCURRENTLY users_email ON users (email);", nil, ""},
		{"add nullable column", "ALTER TABLE users ADD COLUMN nickname text;", nil, ""},
		{"add column with default", "ALTER TABLE users ADD COLUMN score int NOT NULL DEFAULT 0;", nil, ""},
		{"add column default before not null", "alter table users add column score int default 0 not null;", nil, ""},
		{"add serial column", "ALTER TABLE users ADD COLUMN seq bigserial NOT NULL;", nil, ""},
		{"add identity column", "ALTER TABLE users ADD COLUMN n int GENERATED ALWAYS AS IDENTITY NOT NULL;", nil, ""},
		{"add mysql auto increment", "ALTER TABLE users ADD COLUMN n int NOT NULL AUTO_INCREMENT;", nil, ""},
		{"add constraint with not null inside", "ALTER TABLE users ADD CONSTRAINT email_set CHECK (email IS NOT NULL);", nil, ""},
		{"check inside column def", "ALTER TABLE users ADD COLUMN age int CHECK (age IS NOT NULL);", nil, ""},
		{"add index mysql", "ALTER TABLE users ADD INDEX idx_email (email);", nil, ""},
		{"add foreign key", "ALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES users (id);", nil, ""},
		{"drop index", "DROP INDEX users_email;", nil, ""},
		{"drop constraint", "ALTER TABLE users DROP CONSTRAINT email_set;", nil, ""},
		{"drop default", "ALTER TABLE users ALTER COLUMN score DROP DEFAULT;", nil, ""},
		{"drop not null", "ALTER TABLE users ALTER COLUMN email DROP NOT NULL;", nil, ""},
		{"set default", "ALTER TABLE users ALTER COLUMN score SET DEFAULT 1;", nil, ""},
		{"rename constraint", "ALTER TABLE users RENAME CONSTRAINT a TO b;", nil, ""},
		{"insert", "INSERT INTO users (email) VALUES ('drop table users');", nil, ""},
		{"select", "SELECT 1;", nil, ""},
		{"empty", "", nil, ""},
		{"only comments", "-- DROP TABLE users;\n/* TRUNCATE users; */\n", nil, ""},

		// Destructive statements.
		{"drop table", "DROP TABLE users;", []at{{RuleDropTable, 1, 1}}, "drops table users"},
		{"drop table if exists lowercase", "drop table if exists public.sessions;", []at{{RuleDropTable, 1, 1}}, "public.sessions"},
		{"drop several tables", "DROP TABLE a, b.c CASCADE;", []at{{RuleDropTable, 1, 1}}, "drops table a, b.c and"},
		{"drop temporary table", "DROP TEMPORARY TABLE scratch;", nil, ""},
		{"drop schema", "DROP SCHEMA legacy CASCADE;", []at{{RuleDropSchema, 1, 1}}, "schema legacy"},
		{"drop column", "ALTER TABLE users DROP COLUMN email;", []at{{RuleDropColumn, 1, 1}}, "drops column email of users, which the old release still reads; deploy the code that stops using it first, then drop it in a later release"},
		{"drop without column keyword", "ALTER TABLE users DROP email;", []at{{RuleDropColumn, 1, 1}}, "column email"},
		{"drop column if exists", "ALTER TABLE users DROP COLUMN IF EXISTS email;", []at{{RuleDropColumn, 1, 1}}, "column email"},
		{"drop partition", "ALTER TABLE events DROP PARTITION p2019;", []at{{RuleDropPartition, 1, 1}}, "partition p2019"},
		{"rename table alter", "ALTER TABLE users RENAME TO customers;", []at{{RuleRenameTable, 1, 1}}, "renames table users to customers"},
		{"rename table mysql", "RENAME TABLE users TO customers;", []at{{RuleRenameTable, 1, 1}}, "to customers"},
		{"rename column", "ALTER TABLE users RENAME COLUMN email TO mail;", []at{{RuleRenameColumn, 1, 1}}, "renames column email of users to mail"},
		{"rename column postgres short", "ALTER TABLE users RENAME email TO mail;", []at{{RuleRenameColumn, 1, 1}}, "column email"},
		{"change column mysql", "ALTER TABLE users CHANGE email mail varchar(255);", []at{{RuleRenameColumn, 1, 1}}, "to mail"},
		{"change column same name", "ALTER TABLE users CHANGE COLUMN email email varchar(512);", []at{{RuleTypeChange, 1, 1}}, "column email"},
		{"alter column type", "ALTER TABLE users ALTER COLUMN age TYPE bigint;", []at{{RuleTypeChange, 1, 1}}, "column age of users"},
		{"alter column set data type", "ALTER TABLE users ALTER age SET DATA TYPE bigint USING age::bigint;", []at{{RuleTypeChange, 1, 1}}, "column age"},
		{"column named type", "ALTER TABLE items ALTER COLUMN type TYPE text;", []at{{RuleTypeChange, 1, 1}}, "column type of items"},
		{"modify column", "ALTER TABLE users MODIFY COLUMN age bigint;", []at{{RuleTypeChange, 1, 1}}, "column age"},
		{"modify without column", "alter table users modify age bigint not null;", []at{{RuleTypeChange, 1, 1}}, ""},
		{"set not null", "ALTER TABLE users ALTER COLUMN email SET NOT NULL;", []at{{RuleSetNotNull, 1, 1}}, "NOT NULL"},
		{"add not null without default", "ALTER TABLE users ADD COLUMN tenant_id bigint NOT NULL;", []at{{RuleAddNotNull, 1, 1}}, "adds NOT NULL column tenant_id to users without a DEFAULT"},
		{"add not null without column keyword", "alter table users add tenant_id bigint not null references tenants (id);", []at{{RuleAddNotNull, 1, 1}}, "tenant_id"},
		{"add not null varchar", "ALTER TABLE users ADD COLUMN code varchar(10) NOT NULL;", []at{{RuleAddNotNull, 1, 1}}, "code"},
		{"add if not exists not null", "ALTER TABLE users ADD COLUMN IF NOT EXISTS code text NOT NULL;", []at{{RuleAddNotNull, 1, 1}}, "column code"},
		{"add list mysql", "ALTER TABLE users ADD (a int, b int NOT NULL, c int NOT NULL DEFAULT 1);", []at{{RuleAddNotNull, 1, 1}}, "column b"},
		{"truncate", "TRUNCATE TABLE sessions;", []at{{RuleTruncate, 1, 1}}, "every row of sessions"},
		{"truncate short", "truncate sessions", []at{{RuleTruncate, 1, 1}}, "sessions"},
		{"quoted identifiers", `ALTER TABLE "Users" DROP COLUMN "E-mail";`, []at{{RuleDropColumn, 1, 1}}, `column "E-mail" of "Users"`},
		{"backticks", "ALTER TABLE `users` DROP `email`;", []at{{RuleDropColumn, 1, 1}}, "`email`"},
		{"alter table if exists only", "ALTER TABLE IF EXISTS ONLY app.users DROP COLUMN email;", []at{{RuleDropColumn, 1, 1}}, "of app.users"},

		// Several actions, several statements, positions.
		{"multiple actions", "ALTER TABLE users ADD COLUMN a text, DROP COLUMN b, RENAME COLUMN c TO d;",
			[]at{{RuleDropColumn, 1, 1}, {RuleRenameColumn, 1, 1}}, "column b"},
		{"commas in parentheses are not action separators", "ALTER TABLE t ADD COLUMN p numeric(10, 2), ALTER COLUMN q TYPE numeric(12, 4);",
			[]at{{RuleTypeChange, 1, 1}}, "column q"},
		{"statement position", "CREATE TABLE a (id int);\n\n   ALTER TABLE users\n     DROP COLUMN email;",
			[]at{{RuleDropColumn, 3, 4}}, ""},
		{"multi-line keywords", "ALTER\nTABLE\nusers\nDROP\nCOLUMN\nemail\n;", []at{{RuleDropColumn, 1, 1}}, "column email"},
		{"two statements one line", "DROP TABLE a; DROP TABLE b;", []at{{RuleDropTable, 1, 1}, {RuleDropTable, 1, 15}}, "table a"},
		{"no trailing semicolon", "CREATE TABLE x (id int);\nDROP TABLE y", []at{{RuleDropTable, 2, 1}}, ""},
		{"column in characters", "/* é */ DROP TABLE x;", []at{{RuleDropTable, 1, 9}}, ""},
		{"transaction wrapper", "BEGIN;\nALTER TABLE users DROP COLUMN email;\nCOMMIT;", []at{{RuleDropColumn, 2, 1}}, ""},

		// Keywords in comments and strings never match.
		{"keyword in line comment", "-- we will DROP TABLE users later\nCREATE TABLE t (id int);", nil, ""},
		{"keyword in block comment", "/* ALTER TABLE users\n DROP COLUMN email; */ CREATE TABLE t (id int);", nil, ""},
		{"comment inside statement", "ALTER TABLE users /* DROP COLUMN x, */ ADD COLUMN y text;", nil, ""},
		{"comment between keywords", "ALTER TABLE users -- note\n DROP -- really\n COLUMN email;", []at{{RuleDropColumn, 1, 1}}, "column email"},
		{"comment before statement", "-- drop the old column\nALTER TABLE users DROP COLUMN email;", []at{{RuleDropColumn, 2, 1}}, ""},
		{"semicolon in comment", "ALTER TABLE users -- ; DROP TABLE x;\n ADD COLUMN y text;", nil, ""},
		{"keyword in string", "UPDATE notes SET body = 'ALTER TABLE users DROP COLUMN email; TRUNCATE x';", nil, ""},
		{"doubled quote in string", "INSERT INTO t VALUES ('it''s; DROP TABLE users');", nil, ""},
		{"escape string", `INSERT INTO t VALUES (E'\'; DROP TABLE users; --');`, nil, ""},
		{"dollar quoted body", "CREATE FUNCTION f() RETURNS void AS $body$ BEGIN DROP TABLE users; END $body$ LANGUAGE plpgsql;", nil, ""},
		{"anonymous dollar quote", "DO $$ BEGIN TRUNCATE sessions; END $$;", nil, ""},
		{"hash comment at line start", "# DROP TABLE users;\nCREATE TABLE t (id int);", nil, ""},
		{"quoted identifier named drop", `ALTER TABLE users ADD COLUMN "drop" text;`, nil, ""},
		{"default as string containing not null", "ALTER TABLE users ADD COLUMN s text DEFAULT 'NOT NULL';", nil, ""},
		{"not null only in string", "ALTER TABLE users ADD COLUMN s text COMMENT 'NOT NULL';", nil, ""},
		{"unterminated string", "DROP TABLE a; INSERT INTO t VALUES ('oops; DROP TABLE b;", []at{{RuleDropTable, 1, 1}}, "table a"},
		{"unterminated comment", "DROP TABLE a; /* DROP TABLE b;", []at{{RuleDropTable, 1, 1}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := scanSQL("m.sql", tt.sql)
			var gotAt []at
			for _, f := range got {
				gotAt = append(gotAt, at{f.Rule, f.Line, f.Column})
			}
			if !slices.Equal(gotAt, tt.want) {
				t.Fatalf("findings %v, want %v\n%v", gotAt, tt.want, got)
			}
			if tt.msg != "" && !strings.Contains(got[0].Message, tt.msg) {
				t.Errorf("message %q lacks %q", got[0].Message, tt.msg)
			}
			for _, f := range got {
				if f.File != "m.sql" || f.Statement == "" || f.Message == "" {
					t.Errorf("incomplete finding %+v", f)
				}
			}
		})
	}
}

func TestStatementRendering(t *testing.T) {
	got := scanSQL("m.sql", "alter   table public.users\n\t-- why\n  drop column /* old */ email ;")
	if len(got) != 1 {
		t.Fatalf("findings %v", got)
	}
	if got[0].Statement != "alter table public.users drop column email" {
		t.Errorf("statement %q", got[0].Statement)
	}
	got = scanSQL("m.sql", "ALTER TABLE t ALTER COLUMN c TYPE numeric( 10 , 2 ) USING (c::numeric);")
	if want := "ALTER TABLE t ALTER COLUMN c TYPE numeric(10, 2) USING (c::numeric)"; got[0].Statement != want {
		t.Errorf("statement %q, want %q", got[0].Statement, want)
	}
	long := "ALTER TABLE t DROP COLUMN c" + strings.Repeat(", ADD COLUMN x int", 40) + ";"
	got = scanSQL("m.sql", long)
	if n := len([]rune(got[0].Statement)); n != maxStatement || !strings.HasSuffix(got[0].Statement, "…") {
		t.Errorf("long statement not shortened to %d characters: %d %q", maxStatement, n, got[0].Statement)
	}
}

func TestFindingString(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db", "migrate", "003_drop_email.sql")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("ALTER TABLE users DROP COLUMN email;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fs, err := ScanMigrations([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 {
		t.Fatalf("findings %v", fs)
	}
	want := path + ":1:1: ALTER TABLE users DROP COLUMN email — drops column email of users, which the old release still reads; deploy the code that stops using it first, then drop it in a later release"
	if got := fs[0].String(); got != want {
		t.Errorf("String()\n got %s\nwant %s", got, want)
	}
}

func TestScanMigrationsPaths(t *testing.T) {
	dir := t.TempDir()
	write := func(name, sql string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(sql), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	m1 := write("migrate/001_create.sql", "CREATE TABLE users (id int, email text);\n")
	m2 := write("migrate/002_rename.sql", "-- rename\nALTER TABLE users\n  RENAME COLUMN email TO mail;\n")
	m3 := write("migrate/003_drop.SQL", "DROP TABLE sessions;\n")
	write("migrate/README.md", "DROP TABLE nothing;\n")
	other := write("other/004_truncate.sql", "TRUNCATE audit;\n")

	tests := []struct {
		name  string
		paths []string
		want  []string // file:line:rule
	}{
		{"files in order", []string{m3, m2, m1}, []string{m3 + ":1:" + RuleDropTable, m2 + ":2:" + RuleRenameColumn}},
		{"glob", []string{filepath.Join(dir, "migrate", "*.sql")}, []string{m2 + ":2:" + RuleRenameColumn}},
		{"glob matching nothing", []string{filepath.Join(dir, "none", "*.sql")}, nil},
		{"directory takes .sql files in name order", []string{filepath.Join(dir, "migrate")},
			[]string{m2 + ":2:" + RuleRenameColumn, m3 + ":1:" + RuleDropTable}},
		{"a file named twice is scanned once", []string{other, filepath.Join(dir, "other", "*"), other}, []string{other + ":1:" + RuleTruncate}},
		{"no paths", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, err := ScanMigrations(tt.paths)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range fs {
				got = append(got, fmt.Sprintf("%s:%d:%s", f.File, f.Line, f.Rule))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
		})
	}

	if _, err := ScanMigrations([]string{filepath.Join(dir, "missing.sql")}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err %v, want not-exist", err)
	}
	if _, err := ScanMigrations([]string{filepath.Join(dir, "[")}); err == nil {
		t.Error("bad pattern: no error")
	}
	if os.Geteuid() != 0 {
		unreadable := write("locked.sql", "DROP TABLE x;")
		if err := os.Chmod(unreadable, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := ScanMigrations([]string{unreadable}); err == nil || !strings.Contains(err.Error(), "reading migration") {
			t.Errorf("unreadable file: err %v", err)
		}
	}
}

func FuzzScanSQL(f *testing.F) {
	for _, s := range []string{
		"ALTER TABLE users DROP COLUMN email;",
		"ALTER TABLE t ADD (a int, b int NOT NULL",
		"DO $$ BEGIN TRUNCATE x; END $$; DROP TABLE y",
		"E'\\",
		"$a$ $a",
		"/* é ",
		"ALTER TABLE \"x",
		"alter table t rename",
		"ALTER TABLE t ADD ((((,",
		"#\n-- \n;;;",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		lines := strings.Count(src, "\n") + 1
		for _, fd := range scanSQL("f.sql", src) {
			if fd.Line < 1 || fd.Line > lines || fd.Column < 1 {
				t.Fatalf("finding at %d:%d outside the input (%d lines): %+v", fd.Line, fd.Column, lines, fd)
			}
			if fd.Rule == "" || fd.Message == "" || fd.Statement == "" {
				t.Fatalf("incomplete finding %+v", fd)
			}
		}
	})
}

// BenchmarkScanSQL scans about 1 MB of mixed migrations.
func BenchmarkScanSQL(b *testing.B) {
	var sb strings.Builder
	for i := 0; sb.Len() < 1<<20; i++ {
		fmt.Fprintf(&sb, "-- migration %d\nCREATE TABLE t%d (id bigint PRIMARY KEY, note text NOT NULL DEFAULT 'a; DROP TABLE x');\n", i, i)
		fmt.Fprintf(&sb, "ALTER TABLE t%d ADD COLUMN c int, ALTER COLUMN note TYPE varchar(200);\n/* DROP TABLE t%d; */\n", i, i)
	}
	src := sb.String()
	b.SetBytes(int64(len(src)))
	b.ResetTimer()
	for b.Loop() {
		if len(scanSQL("bench.sql", src)) == 0 {
			b.Fatal("no findings")
		}
	}
}
