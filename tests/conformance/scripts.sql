# Session scripts for the differential conformance suite (run.py).
#
# "== name" starts a script; each following line is one statement (a line with ';' is a
# multi-statement COM_QUERY). "setup: SQL" lines run as root on the server before each run;
# "!reset" and "!change_user" send COM_RESET_CONNECTION and COM_CHANGE_USER. Flags:
# "@text-only" (the binary protocol cannot prepare it), "@multiplexed-differs" (a
# difference documented in the README with multiplexing on; compared only for a user with
# multiplex = false). Scripts use @v, @v1, @v2, @a, @b, @x, tmp1, tmp2, lk1, lk2 and seq1:
# the names the leak check looks for.

== replayed variable: sql_mode
SET SESSION sql_mode = 'ANSI_QUOTES,STRICT_ALL_TABLES'
SELECT @@session.sql_mode
SELECT "s" FROM t1 WHERE id = 1
INSERT INTO t1 (a) VALUES ('x')
SELECT @@sql_mode

== replayed variable: time_zone
SET SESSION time_zone = '+05:30'
SELECT @@session.time_zone
SELECT CONVERT_TZ('2020-01-01 00:00:00', @@time_zone, '+00:00')
SELECT @@time_zone

== replayed variable: div_precision_increment
SET SESSION div_precision_increment = 8
SELECT @@session.div_precision_increment
SELECT 1/3
SELECT @@div_precision_increment

== replayed variable: lc_time_names
SET SESSION lc_time_names = 'de_DE'
SELECT @@session.lc_time_names
SELECT DATE_FORMAT('2020-03-01', '%W %M')
SELECT @@lc_time_names

== replayed variable: optimizer_switch
SET SESSION optimizer_switch = 'index_merge=off,derived_merge=off'
SELECT @@session.optimizer_switch
EXPLAIN SELECT * FROM (SELECT * FROM t1) d WHERE a = 1
SELECT @@optimizer_switch

== replayed variable: join_cache_level
SET SESSION join_cache_level = 0
SELECT @@session.join_cache_level
EXPLAIN SELECT * FROM t1 x JOIN t1 y ON x.a = y.a
SELECT @@join_cache_level

== replayed variable: max_statement_time
SET SESSION max_statement_time = 5
SELECT @@session.max_statement_time
SELECT 1
SELECT @@max_statement_time

== replayed variable: foreign_key_checks
SET SESSION foreign_key_checks = 0
SELECT @@session.foreign_key_checks
SELECT @@foreign_key_checks
SELECT @@foreign_key_checks

== replayed variable: unique_checks
SET SESSION unique_checks = 0
SELECT @@session.unique_checks
SELECT @@unique_checks

== replayed variable: sql_select_limit
SET SESSION sql_select_limit = 1
SELECT @@session.sql_select_limit
SELECT a FROM t1 ORDER BY a
SELECT @@sql_select_limit

== replayed variable: group_concat_max_len
SET SESSION group_concat_max_len = 6
SELECT @@session.group_concat_max_len
SELECT GROUP_CONCAT(s ORDER BY id) FROM t1
SHOW WARNINGS
SELECT @@group_concat_max_len

== replayed variable: big_tables
SET SESSION big_tables = 1
SELECT @@session.big_tables
SELECT @@big_tables

== replayed variable: sql_auto_is_null
SET SESSION sql_auto_is_null = 1
SELECT @@session.sql_auto_is_null
SELECT @@sql_auto_is_null

== replayed variable: tx_isolation
SET SESSION tx_isolation = 'READ-COMMITTED'
SELECT @@session.tx_isolation
SELECT @@transaction_isolation
SELECT @@tx_isolation

== replayed variable: transaction_isolation
SET SESSION transaction_isolation = 'SERIALIZABLE'
SELECT @@session.transaction_isolation
SELECT @@tx_isolation
SELECT @@transaction_isolation

== replayed variable: tx_read_only
SET SESSION tx_read_only = 1
SELECT @@session.tx_read_only
INSERT INTO t1 (a) VALUES (9)
SET tx_read_only = 0
SELECT @@tx_read_only

== replayed variable: character_set_results
SET SESSION character_set_results = NULL
SELECT @@session.character_set_results
SELECT 'é'
SELECT @@character_set_results

== replayed variable: character_set_client
SET SESSION character_set_client = latin1
SELECT @@session.character_set_client
SELECT HEX('é')
SELECT @@character_set_client

== replayed variable: collation_connection
SET SESSION collation_connection = 'utf8mb4_bin'
SELECT @@session.collation_connection
SELECT 'a' = 'A'
SELECT @@collation_connection

== replayed variable: sql_safe_updates
SET SESSION sql_safe_updates = 1
SELECT @@session.sql_safe_updates
UPDATE t1 SET a = 0
SELECT @@sql_safe_updates

== replayed variable: max_join_size
SET SESSION max_join_size = 1
SELECT @@session.max_join_size
SELECT @@sql_big_selects
SELECT * FROM t1 x, t1 y
SELECT @@max_join_size

== replayed variable: sql_big_selects
SET SESSION sql_big_selects = 0
SELECT @@session.sql_big_selects
SELECT @@sql_big_selects

== replayed variable: wait_timeout
SET SESSION wait_timeout = 3600
SELECT @@session.wait_timeout
SELECT @@wait_timeout

== replayed variable: interactive_timeout
SET SESSION interactive_timeout = 3600
SELECT @@session.interactive_timeout
SELECT @@interactive_timeout

== replayed variable: net_read_timeout
SET SESSION net_read_timeout = 45
SELECT @@session.net_read_timeout
SELECT @@net_read_timeout

== replayed variable: net_write_timeout
SET SESSION net_write_timeout = 75
SELECT @@session.net_write_timeout
SELECT @@net_write_timeout

== replayed variable: lock_wait_timeout
SET SESSION lock_wait_timeout = 20
SELECT @@session.lock_wait_timeout
SELECT @@lock_wait_timeout

== replayed variable: innodb_lock_wait_timeout
SET SESSION innodb_lock_wait_timeout = 7
SELECT @@session.innodb_lock_wait_timeout
SELECT @@innodb_lock_wait_timeout

== replayed variable: max_sort_length
SET SESSION max_sort_length = 64
SELECT @@session.max_sort_length
SELECT @@max_sort_length

== replayed variable: max_heap_table_size
SET SESSION max_heap_table_size = 1048576
SELECT @@session.max_heap_table_size
SELECT @@max_heap_table_size

== replayed variable: tmp_table_size
SET SESSION tmp_table_size = 1048576
SELECT @@session.tmp_table_size
SELECT @@tmp_table_size

== replayed variable: sort_buffer_size
SET SESSION sort_buffer_size = 1048576
SELECT @@session.sort_buffer_size
SELECT @@sort_buffer_size

== replayed variable: join_buffer_size
SET SESSION join_buffer_size = 1048576
SELECT @@session.join_buffer_size
SELECT @@join_buffer_size

== replayed variable: sql_warnings
SET SESSION sql_warnings = 1
SELECT @@session.sql_warnings
SELECT @@sql_warnings

== replayed variable: sql_notes
SET SESSION sql_notes = 0
SELECT @@session.sql_notes
DROP TABLE IF EXISTS no_such_table
SHOW WARNINGS
SELECT @@sql_notes

== replayed variable: old_mode
SET SESSION old_mode = 'NO_PROGRESS_INFO'
SELECT @@session.old_mode
SELECT @@old_mode

== replayed variable: default_storage_engine
SET SESSION default_storage_engine = 'MyISAM'
SELECT @@session.default_storage_engine
CREATE OR REPLACE TABLE t_engine (a INT)
SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_NAME = 't_engine' AND TABLE_SCHEMA = DATABASE()
DROP TABLE t_engine
SELECT @@default_storage_engine

== replayed variable: default_tmp_storage_engine
SET SESSION default_tmp_storage_engine = 'MyISAM'
SELECT @@session.default_tmp_storage_engine
SELECT @@default_tmp_storage_engine

== replayed variable: explicit_defaults_for_timestamp
SET SESSION explicit_defaults_for_timestamp = 0
SELECT @@session.explicit_defaults_for_timestamp
SELECT @@explicit_defaults_for_timestamp

== replayed variable: optimizer_search_depth
SET SESSION optimizer_search_depth = 3
SELECT @@session.optimizer_search_depth
SELECT @@optimizer_search_depth

== replayed variable: optimizer_prune_level
SET SESSION optimizer_prune_level = 0
SELECT @@session.optimizer_prune_level
SELECT @@optimizer_prune_level

== replayed variable: optimizer_use_condition_selectivity
SET SESSION optimizer_use_condition_selectivity = 1
SELECT @@session.optimizer_use_condition_selectivity
SELECT @@optimizer_use_condition_selectivity

== replayed variable: eq_range_index_dive_limit
SET SESSION eq_range_index_dive_limit = 10
SELECT @@session.eq_range_index_dive_limit
SELECT @@eq_range_index_dive_limit

== replayed variable: in_predicate_conversion_threshold
SET SESSION in_predicate_conversion_threshold = 0
SELECT @@session.in_predicate_conversion_threshold
SELECT @@in_predicate_conversion_threshold

== replayed variable: sql_quote_show_create
SET SESSION sql_quote_show_create = 0
SELECT @@session.sql_quote_show_create
SHOW CREATE TABLE t2
SELECT @@sql_quote_show_create

== replayed variable: check_constraint_checks
SET SESSION check_constraint_checks = 0
SELECT @@session.check_constraint_checks
SELECT @@check_constraint_checks

== replayed variable: max_error_count
SET SESSION max_error_count = 2
SELECT @@session.max_error_count
SELECT 1/0, 2/0, 3/0
SHOW WARNINGS
SELECT @@max_error_count

== replayed variable: long_query_time
SET SESSION long_query_time = 3.5
SELECT @@session.long_query_time
SELECT @@long_query_time

== replayed variable: min_examined_row_limit
SET SESSION min_examined_row_limit = 10
SELECT @@session.min_examined_row_limit
SELECT @@min_examined_row_limit

== replayed variable: auto_increment_increment
SET SESSION auto_increment_increment = 5
SELECT @@session.auto_increment_increment
INSERT INTO t1 (a) VALUES (10), (11)
SELECT id FROM t1 ORDER BY id
SELECT @@auto_increment_increment

== replayed variable: auto_increment_offset
SET SESSION auto_increment_offset = 2
SELECT @@session.auto_increment_offset
SELECT @@auto_increment_offset

== replayed variable: timestamp
SET SESSION timestamp = 1500000000
SELECT @@session.timestamp
SELECT NOW(), UNIX_TIMESTAMP()
SELECT @@timestamp

== replayed variable: sql_buffer_result
SET SESSION sql_buffer_result = 1
SELECT @@session.sql_buffer_result
SELECT @@sql_buffer_result

== replayed variable: updatable_views_with_limit
SET SESSION updatable_views_with_limit = 0
SELECT @@session.updatable_views_with_limit
SELECT @@updatable_views_with_limit

== replayed variable: standard_compliant_cte
SET SESSION standard_compliant_cte = 0
SELECT @@session.standard_compliant_cte
SELECT @@standard_compliant_cte

== replayed variable: completion_type
SET SESSION completion_type = 'CHAIN'
SELECT @@session.completion_type
SELECT @@completion_type

== replayed variable: bulk_insert_buffer_size
SET SESSION bulk_insert_buffer_size = 65536
SELECT @@session.bulk_insert_buffer_size
SELECT @@bulk_insert_buffer_size

== replayed variable: read_buffer_size
SET SESSION read_buffer_size = 65536
SELECT @@session.read_buffer_size
SELECT @@read_buffer_size

== replayed variable: collation_server
SET SESSION collation_server = 'latin1_bin'
SELECT @@session.collation_server
SELECT @@collation_server

== replayed variable: character_set_server
SET SESSION character_set_server = latin1
SELECT @@session.character_set_server
SELECT @@character_set_server

== replayed variable: histogram_size
SET SESSION histogram_size = 100
SELECT @@session.histogram_size
SELECT @@histogram_size

== replayed variable: sql_if_exists
SET SESSION sql_if_exists = 1
SELECT @@session.sql_if_exists
DROP TABLE no_such_table
SELECT @@sql_if_exists

== replayed variable: max_recursive_iterations
SET SESSION max_recursive_iterations = 5
SELECT @@session.max_recursive_iterations
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 100) SELECT COUNT(*) FROM r
SELECT @@max_recursive_iterations

== replayed variable: optimizer_max_sel_arg_weight
SET SESSION optimizer_max_sel_arg_weight = 1000
SELECT @@session.optimizer_max_sel_arg_weight
SELECT @@optimizer_max_sel_arg_weight

== replayed variable: log_slow_verbosity
SET SESSION log_slow_verbosity = 'query_plan'
SELECT @@session.log_slow_verbosity
SELECT @@log_slow_verbosity

== replayed variable: note_verbosity
SET SESSION note_verbosity = 'basic'
SELECT @@session.note_verbosity
SELECT @@note_verbosity

== replayed variable: several in one SET
SET sql_mode = '', time_zone = '-02:00', div_precision_increment = 2
SELECT @@sql_mode, @@time_zone, 1/7

== replayed variable: @@ form
SET @@session.sql_mode = 'NO_ZERO_DATE'
SET @@time_zone = '+01:00'
SELECT @@sql_mode, @@time_zone

== replayed variable: back to DEFAULT
SET sql_mode = 'ANSI'
SET sql_mode = DEFAULT
SELECT @@sql_mode

== replayed variable: set twice
SET time_zone = '+01:00'
SET time_zone = '+02:00'
SELECT @@time_zone

== replayed variable: max_join_size then sql_big_selects
SET max_join_size = 1000
SET sql_big_selects = 1
SELECT @@max_join_size, @@sql_big_selects

== replayed variable: SET SESSION TRANSACTION
SET SESSION TRANSACTION ISOLATION LEVEL READ UNCOMMITTED
SELECT @@tx_isolation
SET SESSION TRANSACTION READ ONLY
SELECT @@tx_read_only
SET SESSION TRANSACTION READ WRITE

== replayed variable: a failed SET changes nothing
SET sql_mode = 'NOT_A_MODE'
SELECT @@sql_mode
SET time_zone = 'Nowhere/Nothing'
SELECT @@time_zone

== replayed variable: global scope is not the session
SET GLOBAL max_connections = @@global.max_connections
SELECT @@session.sql_mode

== SET from an expression
SET sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')
SELECT @@sql_mode
SELECT "x" FROM t1 WHERE id = 1

== SET from a subquery
SET div_precision_increment = (SELECT MAX(a) FROM t1)
SELECT 1/3

== SET time_zone from a user variable
SET @x = '+04:00'
SET time_zone = @x
SELECT @@time_zone

== SET STATEMENT lasts one statement
SET STATEMENT sql_select_limit = 1 FOR SELECT a FROM t1 ORDER BY a
SELECT COUNT(*) FROM t1
SELECT @@sql_select_limit

== SET STATEMENT FOR CREATE TEMPORARY TABLE
SET STATEMENT max_statement_time = 10 FOR CREATE TEMPORARY TABLE tmp1 (a INT)
INSERT INTO tmp1 VALUES (1)
SELECT COUNT(*) FROM tmp1

== SET NAMES utf8mb4
SET NAMES utf8mb4
SELECT @@character_set_client, @@character_set_connection, @@character_set_results, @@collation_connection
SELECT 'abc', LENGTH('abc'), CHARSET('abc')
SELECT s, CONCAT(s, 'x') FROM t1 ORDER BY id

== SET NAMES latin1
SET NAMES latin1
SELECT @@character_set_client, @@character_set_connection, @@character_set_results, @@collation_connection
SELECT 'abc', LENGTH('abc'), CHARSET('abc')
SELECT s, CONCAT(s, 'x') FROM t1 ORDER BY id

== SET NAMES swe7
SET NAMES swe7
SELECT @@character_set_client, @@character_set_connection, @@character_set_results, @@collation_connection
SELECT 'abc', LENGTH('abc'), CHARSET('abc')
SELECT s, CONCAT(s, 'x') FROM t1 ORDER BY id

== SET NAMES binary
SET NAMES binary
SELECT @@character_set_client, @@character_set_connection, @@character_set_results, @@collation_connection
SELECT 'abc', LENGTH('abc'), CHARSET('abc')
SELECT s, CONCAT(s, 'x') FROM t1 ORDER BY id

== SET NAMES utf8mb3
SET NAMES utf8mb3
SELECT @@character_set_client, @@character_set_connection, @@character_set_results, @@collation_connection
SELECT 'abc', LENGTH('abc'), CHARSET('abc')
SELECT s, CONCAT(s, 'x') FROM t1 ORDER BY id

== SET NAMES ascii
SET NAMES ascii
SELECT @@character_set_client, @@character_set_connection, @@character_set_results, @@collation_connection
SELECT 'abc', LENGTH('abc'), CHARSET('abc')
SELECT s, CONCAT(s, 'x') FROM t1 ORDER BY id

== SET NAMES cp1251
SET NAMES cp1251
SELECT @@character_set_client, @@character_set_connection, @@character_set_results, @@collation_connection
SELECT 'abc', LENGTH('abc'), CHARSET('abc')
SELECT s, CONCAT(s, 'x') FROM t1 ORDER BY id

== SET NAMES with COLLATE
SET NAMES utf8mb4 COLLATE utf8mb4_bin
SELECT @@collation_connection, 'a' = 'A'

== SET NAMES latin1 then utf8mb4
SET NAMES latin1
SET NAMES utf8mb4
SELECT @@character_set_client, 'é'

== SET NAMES DEFAULT
SET NAMES latin1
SET NAMES DEFAULT
SELECT @@character_set_client

== SET CHARACTER SET
SET CHARACTER SET latin1
SELECT @@character_set_client, @@character_set_connection, @@character_set_results

== swe7 and an illegal mix of collations
CREATE OR REPLACE TABLE t_cs (a VARCHAR(10) CHARACTER SET utf8mb4)
INSERT INTO t_cs VALUES ('x')
SET NAMES swe7
SELECT CONCAT(a, 'é') FROM t_cs
SELECT CONCAT(a, DATE_FORMAT('2020-01-02', '%Y-%m-%d')) FROM t_cs
SET NAMES utf8mb4
DROP TABLE t_cs

== non-ASCII round trip
SELECT 'é', 'ü', '日本', '😀'
SELECT HEX('日本')

== collation_connection alone
SET collation_connection = 'latin1_swedish_ci'
SELECT @@character_set_connection, CHARSET('x')

== user variable: SET
SET @v = 1
SELECT @v
SET @v = @v + 1
SELECT @v

== user variable: := in SELECT
SELECT @v := 5
SELECT @v

== user variable: SELECT INTO
SELECT a INTO @v FROM t1 WHERE id = 2
SELECT @v

== user variable: several
SET @v1 = 'a', @v2 = 'b'
SELECT CONCAT(@v1, @v2)

== user variable: := in UPDATE
UPDATE t1 SET a = (@v := a + 10) WHERE id = 1
SELECT @v

== user variable: := in DELETE
DELETE FROM t1 WHERE (@a := id) ORDER BY id LIMIT 1
SELECT @a

== user variable: then reset
SET @v = 9
!reset
SELECT @v

== user variable: in a WHERE
SET @x = 2
SELECT s FROM t1 WHERE a = @x

== user variable: string, binary and NULL
SET @v = 'abc', @v1 = 0x00FF, @v2 = NULL
SELECT @v, @v1, @v2, @v2 IS NULL

== temporary table: create, fill, read, drop
CREATE TEMPORARY TABLE tmp1 (a INT)
INSERT INTO tmp1 VALUES (1), (2)
SELECT SUM(a) FROM tmp1
DROP TEMPORARY TABLE tmp1
SELECT COUNT(*) FROM tmp1

== temporary table: shadows a table
CREATE TEMPORARY TABLE t2 (id INT)
SELECT COUNT(*) FROM t2
DROP TEMPORARY TABLE t2
SELECT COUNT(*) FROM t2

== temporary table: CREATE OR REPLACE
CREATE OR REPLACE TEMPORARY TABLE tmp2 AS SELECT * FROM t1
SELECT COUNT(*) FROM tmp2

== temporary table: kept across statements
CREATE TEMPORARY TABLE tmp1 (a INT)
SELECT 1
SELECT 2
INSERT INTO tmp1 VALUES (3)
SELECT * FROM tmp1

== temporary table: then reset
CREATE TEMPORARY TABLE tmp1 (a INT)
!reset
SELECT COUNT(*) FROM tmp1

== LOCK TABLES and UNLOCK TABLES
LOCK TABLES t1 READ
SELECT COUNT(*) FROM t1
SELECT COUNT(*) FROM t2
UNLOCK TABLES
SELECT COUNT(*) FROM t2

== LOCK TABLES WRITE
LOCK TABLES t1 WRITE
INSERT INTO t1 (a) VALUES (7)
UNLOCK TABLES
SELECT COUNT(*) FROM t1

== GET_LOCK and RELEASE_LOCK
SELECT GET_LOCK('lk1', 0)
SELECT IS_FREE_LOCK('lk1'), IS_USED_LOCK('lk1') IS NOT NULL
SELECT RELEASE_LOCK('lk1')
SELECT IS_FREE_LOCK('lk1')

== GET_LOCK twice, released once
SELECT GET_LOCK('lk1', 0)
SELECT GET_LOCK('lk1', 0)
SELECT RELEASE_LOCK('lk1')
SELECT IS_FREE_LOCK('lk1')

== RELEASE_LOCK of a lock not held
SELECT GET_LOCK('lk1', 0)
SELECT RELEASE_LOCK('lk2')
SELECT IS_FREE_LOCK('lk1')

== GET_LOCK over rows
SELECT GET_LOCK(CONCAT('lk', seq), 0) FROM seq_1_to_2
SELECT RELEASE_LOCK('lk1')
SELECT IS_FREE_LOCK('lk1'), IS_FREE_LOCK('lk2')

== RELEASE_ALL_LOCKS
SELECT GET_LOCK('lk1', 0), GET_LOCK('lk2', 0)
SELECT RELEASE_ALL_LOCKS()
SELECT IS_FREE_LOCK('lk1'), IS_FREE_LOCK('lk2')

== FLUSH TABLES WITH READ LOCK
FLUSH TABLES WITH READ LOCK
INSERT INTO t1 (a) VALUES (5)
UNLOCK TABLES
INSERT INTO t1 (a) VALUES (5)

== FLUSH TABLES FOR EXPORT
FLUSH TABLES t2 FOR EXPORT
SELECT COUNT(*) FROM t2
UNLOCK TABLES

== BACKUP STAGE
BACKUP STAGE START
BACKUP STAGE END
SELECT 1

== BACKUP LOCK
BACKUP LOCK t2
SELECT COUNT(*) FROM t2
BACKUP UNLOCK

== SQL_CALC_FOUND_ROWS and FOUND_ROWS()
SELECT SQL_CALC_FOUND_ROWS * FROM t1 LIMIT 1
SELECT FOUND_ROWS()

== FOUND_ROWS() after a plain SELECT
SELECT * FROM t1 WHERE a > 1
SELECT FOUND_ROWS()

== SQL PREPARE and EXECUTE
@text-only
PREPARE s1 FROM 'SELECT a FROM t1 WHERE id = ?'
SET @x = 2
EXECUTE s1 USING @x
DEALLOCATE PREPARE s1
EXECUTE s1 USING @x

== SQL EXECUTE IMMEDIATE
@text-only
EXECUTE IMMEDIATE 'SELECT COUNT(*) FROM t1'
EXECUTE IMMEDIATE 'SET @v = 3'
SELECT @v

== HANDLER
@text-only
HANDLER t1 OPEN
HANDLER t1 READ FIRST
HANDLER t1 READ NEXT
HANDLER t1 CLOSE

== XA transaction
@text-only
XA START 'x1'
INSERT INTO t1 (a) VALUES (50)
XA END 'x1'
XA PREPARE 'x1'
XA COMMIT 'x1'
SELECT COUNT(*) FROM t1

== transaction: BEGIN and COMMIT
BEGIN
INSERT INTO t1 (a) VALUES (4)
SELECT COUNT(*) FROM t1
SELECT @@in_transaction
COMMIT
SELECT COUNT(*) FROM t1

== transaction: ROLLBACK
START TRANSACTION
DELETE FROM t1
SELECT COUNT(*) FROM t1
ROLLBACK
SELECT COUNT(*) FROM t1

== transaction: SAVEPOINT
BEGIN
INSERT INTO t1 (a) VALUES (4)
SAVEPOINT sp1
INSERT INTO t1 (a) VALUES (5)
ROLLBACK TO SAVEPOINT sp1
COMMIT
SELECT COUNT(*) FROM t1

== transaction: READ ONLY
START TRANSACTION READ ONLY
SELECT COUNT(*) FROM t1
INSERT INTO t1 (a) VALUES (4)
COMMIT

== transaction: WITH CONSISTENT SNAPSHOT
START TRANSACTION WITH CONSISTENT SNAPSHOT
SELECT COUNT(*) FROM t1
COMMIT

== transaction: an error inside
BEGIN
INSERT INTO t1 (id, a) VALUES (1, 1)
SELECT @@in_transaction
ROLLBACK

== transaction: implicit commit by DDL
BEGIN
INSERT INTO t1 (a) VALUES (4)
CREATE OR REPLACE TABLE t_ddl (a INT)
SELECT @@in_transaction
ROLLBACK
SELECT COUNT(*) FROM t1
DROP TABLE t_ddl

== autocommit = 0
SET autocommit = 0
INSERT INTO t1 (a) VALUES (4)
SELECT @@autocommit, @@in_transaction
ROLLBACK
SET autocommit = 1
SELECT COUNT(*) FROM t1

== autocommit = 0 then COMMIT
SET autocommit = 0
INSERT INTO t1 (a) VALUES (4)
COMMIT
SET autocommit = 1
SELECT COUNT(*) FROM t1

== transaction then reset
BEGIN
INSERT INTO t1 (a) VALUES (4)
!reset
SELECT @@in_transaction
SELECT COUNT(*) FROM t1

== CALL that sets a variable
CREATE OR REPLACE PROCEDURE p_set() SET @v = 11
CALL p_set()
SELECT @v
DROP PROCEDURE p_set

== CALL that creates a temporary table
CREATE OR REPLACE PROCEDURE p_tmp() CREATE TEMPORARY TABLE tmp1 (a INT)
CALL p_tmp()
SELECT COUNT(*) FROM tmp1
DROP PROCEDURE p_tmp

== CALL that takes a lock
CREATE OR REPLACE PROCEDURE p_lock() DO GET_LOCK('lk1', 0)
CALL p_lock()
SELECT IS_FREE_LOCK('lk1')
DROP PROCEDURE p_lock

== CALL that returns rows
@text-only
CREATE OR REPLACE PROCEDURE p_rows() SELECT a FROM t1 ORDER BY a
CALL p_rows()
SELECT 1
DROP PROCEDURE p_rows

== CALL that changes the schema
CREATE OR REPLACE PROCEDURE p_ins() INSERT INTO t1 (a) VALUES (99)
CALL p_ins()
SELECT LAST_INSERT_ID() > 0, ROW_COUNT()
DROP PROCEDURE p_ins

== CALL that sets a session variable
CREATE OR REPLACE PROCEDURE p_mode() SET SESSION sql_mode = 'ANSI'
CALL p_mode()
SELECT @@sql_mode
DROP PROCEDURE p_mode

== a stored function
CREATE OR REPLACE FUNCTION f_add(x INT) RETURNS INT RETURN x + 1
SELECT f_add(a) FROM t1 ORDER BY id
DROP FUNCTION f_add

== sequence: NEXTVAL and LASTVAL
SELECT NEXTVAL(seq1)
SELECT LASTVAL(seq1)
SELECT NEXTVAL(seq1), LASTVAL(seq1)

== sequence: NEXT VALUE FOR
INSERT INTO t1 (a) VALUES (NEXT VALUE FOR seq1)
SELECT PREVIOUS VALUE FOR seq1

== sequence: LASTVAL never set
SELECT LASTVAL(seq1)
SELECT PREVIOUS VALUE FOR seq1

== sequence: SETVAL
SELECT SETVAL(seq1, 100)
SELECT NEXTVAL(seq1)

== warnings: division by zero
SELECT 1/0
SHOW WARNINGS
SELECT @@warning_count

== warnings: SHOW WARNINGS twice
SELECT 1/0
SHOW WARNINGS
SHOW WARNINGS

== warnings: count after a clean statement
SELECT 1/0
SELECT 1
SHOW WARNINGS

== warnings: truncation
SET sql_mode = ''
INSERT INTO t1 (a) VALUES ('12abc')
SHOW WARNINGS
SELECT @@warning_count

== warnings: strict mode turns them into errors
SET sql_mode = 'STRICT_ALL_TABLES'
INSERT INTO t1 (a) VALUES ('12abc')
SHOW WARNINGS
SHOW ERRORS

== warnings: ambiguous GROUP BY (1052)
SELECT a AS s FROM t1 GROUP BY s
SHOW WARNINGS

== warnings: SHOW COUNT(*) WARNINGS
SELECT 1/0, 2/0
SHOW COUNT(*) WARNINGS

== warnings: DROP IF EXISTS note
DROP TABLE IF EXISTS no_such_table
SHOW WARNINGS

== warnings: then a connection change
SELECT CAST('x' AS INT)
SHOW WARNINGS

== errors: unknown table
SELECT * FROM no_such_table
SHOW ERRORS
SELECT @@error_count

== errors: syntax
SELEC 1
SHOW ERRORS

== errors: duplicate key
INSERT INTO t2 VALUES (1, 'z')
SHOW WARNINGS

== errors: SIGNAL
@text-only
SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'custom failure'
SHOW ERRORS

== errors: unknown column
SELECT nope FROM t1

== errors: division by zero in strict mode
SET sql_mode = 'STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO'
INSERT INTO t1 (a) VALUES (1/0)

== GET DIAGNOSTICS
@text-only
SELECT 1/0
GET DIAGNOSTICS @x = NUMBER
SELECT @x

== LAST_INSERT_ID after INSERT
INSERT INTO t1 (a) VALUES (5)
SELECT LAST_INSERT_ID()
SELECT @@identity, @@last_insert_id

== LAST_INSERT_ID after a multi-row INSERT
INSERT INTO t1 (a) VALUES (5), (6), (7)
SELECT LAST_INSERT_ID()

== LAST_INSERT_ID(expr)
SELECT LAST_INSERT_ID(77)
SELECT LAST_INSERT_ID()

== LAST_INSERT_ID inside an INSERT
INSERT INTO t1 (a) VALUES (5)
INSERT INTO t2 VALUES (LAST_INSERT_ID(), 'z')
SELECT * FROM t2 ORDER BY id

== ROW_COUNT after UPDATE
UPDATE t1 SET a = a + 1 WHERE a > 1
SELECT ROW_COUNT()

== ROW_COUNT after SELECT
SELECT * FROM t1
SELECT ROW_COUNT()

== affected rows of INSERT ON DUPLICATE KEY UPDATE
INSERT INTO t2 VALUES (1, 'q') ON DUPLICATE KEY UPDATE v = 'q'
INSERT INTO t2 VALUES (1, 'q') ON DUPLICATE KEY UPDATE v = 'q'

== affected rows of REPLACE
REPLACE INTO t2 VALUES (2, 'w')

== affected rows of UPDATE with no change
UPDATE t1 SET a = a

== insert id with an explicit id
INSERT INTO t1 (id, a) VALUES (100, 1)
INSERT INTO t1 (a) VALUES (2)
SELECT LAST_INSERT_ID()

== INSERT ... RETURNING
INSERT INTO t1 (a) VALUES (8) RETURNING id, a

== DELETE ... RETURNING
DELETE FROM t1 WHERE a = 1 RETURNING id, s

== USE another schema
USE conformance_other
SELECT DATABASE()
SELECT a FROM t_other
SELECT COUNT(*) FROM t1

== USE and back
USE conformance_other
USE corelay_test
SELECT DATABASE(), COUNT(*) FROM t1

== USE an unknown schema
USE no_such_schema
SELECT DATABASE()

== qualified names from another schema
SELECT a FROM conformance_other.t_other

== SHOW TABLES
SHOW TABLES LIKE 't%'
SHOW TABLES FROM conformance_other

== types: numbers
SELECT 1, -1, 1.5, 1e3, CAST(1 AS UNSIGNED), CAST(2.50 AS DECIMAL(10,3)), 18446744073709551615

== types: dates and times
SELECT DATE '2020-02-29', TIME '12:34:56.789', TIMESTAMP '2020-01-01 00:00:00', CAST('2020-01-01 01:02:03.456789' AS DATETIME(6)), YEAR('2021-01-01')

== types: strings and binary
SELECT 'x', _binary 'y', X'00FF', REPEAT('a', 300), CAST('z' AS CHAR(3))

== types: NULL and empty
SELECT NULL, '', 0, NULL IS NULL

== types: a table of many types
CREATE OR REPLACE TABLE t_types (a TINYINT, b SMALLINT UNSIGNED, c BIGINT, d FLOAT, e DOUBLE, f DECIMAL(8,2), g DATE, h DATETIME(3), i TIME, j CHAR(5), k VARCHAR(10), l TEXT, m BLOB, n ENUM('x','y'), o SET('p','q'), p BIT(4), q JSON)
INSERT INTO t_types VALUES (-1, 65535, 9007199254740993, 1.5, 2.25, 123.45, '2020-01-01', '2020-01-01 10:00:00.123', '-01:02:03', 'ab', 'cd', 'long text', X'0102', 'y', 'p,q', b'1010', '{"k": [1, 2]}')
SELECT * FROM t_types
DROP TABLE t_types

== empty result set
SELECT * FROM t1 WHERE 1 = 0

== large result
SELECT seq, REPEAT('r', seq % 50) FROM seq_1_to_2000

== aggregates and grouping
SELECT a % 2, COUNT(*), SUM(a), GROUP_CONCAT(s ORDER BY s) FROM t1 GROUP BY a % 2 ORDER BY 1

== window functions
SELECT id, ROW_NUMBER() OVER (ORDER BY a DESC), SUM(a) OVER () FROM t1 ORDER BY id

== a CTE
WITH c AS (SELECT a * 2 AS d FROM t1) SELECT SUM(d) FROM c

== multi-statement text
@text-only
SELECT 1; SELECT 2 AS b; UPDATE t1 SET a = a WHERE id = 1

== multi-statement with SET
@text-only
SET @v = 4; SELECT @v + 1

== multi-statement with an error in the middle
@text-only
SELECT 1; SELECT * FROM no_such_table; SELECT 3

== SHOW statements
SHOW COLUMNS FROM t1
SHOW INDEX FROM t2
SHOW CREATE TABLE t2

== DESCRIBE and EXPLAIN
DESCRIBE t1
EXPLAIN SELECT * FROM t1 WHERE id = 1

== information_schema
SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ('t1', 't2') ORDER BY 1

== DDL round
CREATE OR REPLACE TABLE t_ddl (a INT PRIMARY KEY)
ALTER TABLE t_ddl ADD COLUMN b INT
INSERT INTO t_ddl VALUES (1, 2)
SELECT * FROM t_ddl
DROP TABLE t_ddl

== views
CREATE OR REPLACE VIEW v1 AS SELECT a FROM t1 WHERE a > 1
SELECT * FROM v1 ORDER BY a
DROP VIEW v1

== prepared parameters in text
@text-only
SELECT ? + 1

== DO statement
DO 1 + 1
DO SLEEP(0)

== SELECT FOR UPDATE outside a transaction
SELECT * FROM t1 WHERE id = 1 FOR UPDATE

== server functions
SELECT VERSION() = @@version, USER() = CURRENT_USER() OR 1, DATABASE()

== SHOW VARIABLES of the session
SET sql_mode = 'ANSI'
SHOW SESSION VARIABLES LIKE 'sql_mode'

== KILL of an unknown id
KILL QUERY 999999999

== COM_RESET_CONNECTION clears the session
SET @v = 1
SET sql_mode = 'ANSI'
CREATE TEMPORARY TABLE tmp1 (a INT)
!reset
SELECT @v, @@sql_mode
SELECT COUNT(*) FROM tmp1

== COM_RESET_CONNECTION keeps the schema
USE conformance_other
!reset
SELECT DATABASE()

== COM_RESET_CONNECTION with nothing set
!reset
SELECT 1

== COM_CHANGE_USER clears the session
SET @v = 1
SET time_zone = '+07:00'
!change_user
SELECT @v, @@time_zone, DATABASE()

== COM_CHANGE_USER inside a transaction
BEGIN
INSERT INTO t1 (a) VALUES (6)
!change_user
SELECT @@in_transaction, COUNT(*) FROM t1

== COM_CHANGE_USER then state
!change_user
SET @v = 2
SELECT @v

== connection counters
@multiplexed-differs
SHOW SESSION STATUS LIKE 'Com_select'
SELECT 1
SHOW SESSION STATUS LIKE 'Com_select'

== SET GLOBAL and the session
@multiplexed-differs
SET GLOBAL max_sort_length = 1000
SELECT @@session.max_sort_length, @@global.max_sort_length
SET GLOBAL max_sort_length = DEFAULT
