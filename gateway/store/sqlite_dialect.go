package store

import (
	"strconv"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/migrator"
	"gorm.io/gorm/schema"
)

// sqliteDialect is gorm's dialect for SQLite over the connections of sqliteConnector (modernc.org/sqlite with a
// cache of prepared statements, sqlite_stmtcache.go). It replaces github.com/glebarez/sqlite, whose driver
// (glebarez/go-sqlite, a fork of modernc.org/sqlite's) compiled every statement again at each execution, even
// one prepared; the two drivers cannot be linked together (both register the name "sqlite"). What gorm needs
// of a dialect is below, as glebarez/sqlite v1.11.0 (MIT) wrote it for gorm's statements: ? placeholders,
// back-quoted names, RETURNING on INSERT, UPDATE and DELETE (SQLite ≥ 3.35; modernc.org/sqlite v1.55 is 3.53.3),
// no row locks (SQLite locks the database: "FOR UPDATE" is dropped), savepoints for nested transactions. The
// schema comes from the SQL migrations (migrate.go), never from gorm's migrator: Migrator is gorm's generic one,
// for the interface.
type sqliteDialect struct {
	conn gorm.ConnPool
}

func (sqliteDialect) Name() string { return "sqlite" }

func (d sqliteDialect) Initialize(db *gorm.DB) error {
	db.ConnPool = d.conn
	callbacks.RegisterDefaultCallbacks(db, &callbacks.Config{
		CreateClauses:        []string{"INSERT", "VALUES", "ON CONFLICT", "RETURNING"},
		UpdateClauses:        []string{"UPDATE", "SET", "FROM", "WHERE", "RETURNING"},
		DeleteClauses:        []string{"DELETE", "FROM", "WHERE", "RETURNING"},
		LastInsertIDReversed: true,
	})
	for k, v := range d.ClauseBuilders() {
		db.ClauseBuilders[k] = v
	}
	return nil
}

func (sqliteDialect) ClauseBuilders() map[string]clause.ClauseBuilder {
	return map[string]clause.ClauseBuilder{
		"INSERT": func(c clause.Clause, builder clause.Builder) {
			insert, ok := c.Expression.(clause.Insert)
			stmt, isStmt := builder.(*gorm.Statement)
			if !ok || !isStmt {
				c.Build(builder)
				return
			}
			stmt.WriteString("INSERT ")
			if insert.Modifier != "" {
				stmt.WriteString(insert.Modifier)
				stmt.WriteByte(' ')
			}
			stmt.WriteString("INTO ")
			if insert.Table.Name == "" {
				stmt.WriteQuoted(stmt.Table)
			} else {
				stmt.WriteQuoted(insert.Table)
			}
		},
		"LIMIT": func(c clause.Clause, builder clause.Builder) {
			limit, ok := c.Expression.(clause.Limit)
			if !ok {
				return
			}
			lmt := -1 // SQLite has no OFFSET without LIMIT: -1 is no limit
			if limit.Limit != nil && *limit.Limit >= 0 {
				lmt = *limit.Limit
			}
			if lmt >= 0 || limit.Offset > 0 {
				builder.WriteString("LIMIT ")
				builder.WriteString(strconv.Itoa(lmt))
			}
			if limit.Offset > 0 {
				builder.WriteString(" OFFSET ")
				builder.WriteString(strconv.Itoa(limit.Offset))
			}
		},
		"FOR": func(c clause.Clause, builder clause.Builder) {
			if _, ok := c.Expression.(clause.Locking); ok {
				return // SQLite has no row locks; a writing transaction holds the database's (BEGIN IMMEDIATE)
			}
			c.Build(builder)
		},
	}
}

func (sqliteDialect) DefaultValueOf(field *schema.Field) clause.Expression {
	if field.AutoIncrement {
		return clause.Expr{SQL: "NULL"}
	}
	return clause.Expr{SQL: "DEFAULT"}
}

func (d sqliteDialect) Migrator(db *gorm.DB) gorm.Migrator {
	return migrator.Migrator{Config: migrator.Config{DB: db, Dialector: d, CreateIndexAfterCreateTable: true}}
}

func (sqliteDialect) BindVarTo(writer clause.Writer, _ *gorm.Statement, _ any) {
	writer.WriteByte('?')
}

// QuoteTo quotes a name, and each part of a dotted one ("table.column"), in back quotes, doubling any back
// quote inside it.
func (sqliteDialect) QuoteTo(writer clause.Writer, str string) {
	for i, part := range strings.Split(str, ".") {
		if i > 0 {
			writer.WriteByte('.')
		}
		writer.WriteByte('`')
		writer.WriteString(strings.ReplaceAll(part, "`", "``"))
		writer.WriteByte('`')
	}
}

func (sqliteDialect) Explain(sql string, vars ...any) string {
	return logger.ExplainSQL(sql, nil, `"`, vars...)
}

func (sqliteDialect) DataTypeOf(field *schema.Field) string {
	switch field.DataType {
	case schema.Bool:
		return "numeric"
	case schema.Int, schema.Uint:
		if field.AutoIncrement {
			return "integer PRIMARY KEY AUTOINCREMENT"
		}
		return "integer"
	case schema.Float:
		return "real"
	case schema.String:
		return "text"
	case schema.Time:
		if val, ok := field.TagSettings["TYPE"]; ok {
			return val
		}
		return "datetime"
	case schema.Bytes:
		return "blob"
	}
	return string(field.DataType)
}

func (sqliteDialect) SavePoint(tx *gorm.DB, name string) error {
	return tx.Exec("SAVEPOINT " + name).Error
}

func (sqliteDialect) RollbackTo(tx *gorm.DB, name string) error {
	return tx.Exec("ROLLBACK TO SAVEPOINT " + name).Error
}
