"""PostgreSQL: ``sortpoint_ingest_one`` writes what the ingest plan decided, and decides nothing.

The function of 0002 applied the daily cap and checked labels itself, a second
copy of rules Python holds.  This one checks the plan's stated assumptions
(nonce and kept kiosk copy, label, claim, the day's total at most
``p_max_credited``, a new id) and writes the plan's status, points, reason and
ledger entry; anything else raises a fallback SQLSTATE (SPF01-05).  Its nonce
statement is the text of ``backend.deposits.context.nonce_if_current_sql``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The function as this revision creates it, spelled out: a migration imports no live
# module (backend/deposits/pg_one.py builds the same text; tests/test_ingest_fn.py holds
# the two equal, so a change to the function is a new revision).
CREATE_SQL = r"""
CREATE OR REPLACE FUNCTION sortpoint_ingest_one(p_kiosk_id text, p_nonce text, p_now timestamptz, p_secret_as_stored text, p_timezone text, p_label_key text, p_rules_mark integer, p_serial text, p_household_code text, p_community_id integer, p_deposit_id uuid, p_door integer, p_category_id integer, p_net_g integer, p_occurred_at timestamptz, p_local_day date, p_content_hash text, p_status text, p_rule_id integer, p_points integer, p_reason text, p_max_credited integer, p_entry_kind text, p_entry_reason text, p_source_type text, p_source_id text, p_idempotency_key text)
RETURNS TABLE (out_balance bigint)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    v_household integer;
    v_balance bigint;
    v_count integer;
BEGIN
    -- assumed: the kept kiosk copy is current and the nonce is new
    INSERT INTO request_nonces (kiosk_id, nonce, seen_at)
    SELECT p_kiosk_id, p_nonce, p_now
     WHERE EXISTS (SELECT 1 FROM kiosks k JOIN communities c ON c.id = k.community_id
                    WHERE k.id = p_kiosk_id AND k.enabled AND k.secret = p_secret_as_stored
                      AND c.timezone = p_timezone AND c.label_public_key = p_label_key)
       AND (SELECT coalesce(max(r.id), 0) FROM points_rules r) = p_rules_mark
    ON CONFLICT (kiosk_id, nonce) DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'replayed nonce or stale kiosk copy' USING ERRCODE = 'SPF01';
    END IF;
    -- assumed: the label is this household's, of this community, not revoked; the
    -- household's account lock serialises its labels, totals and entries
    SELECT l.household_id, a.balance, a.entry_count
      INTO v_household, v_balance, v_count
      FROM labels l
      JOIN households h ON h.id = l.household_id
      JOIN accounts a ON a.household_id = l.household_id
     WHERE l.serial = p_serial AND h.code = p_household_code
       AND l.community_id = p_community_id AND l.revoked_at IS NULL
       FOR NO KEY UPDATE OF a;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'label for the general path' USING ERRCODE = 'SPF02';
    END IF;
    -- assumed: the label was never claimed
    UPDATE labels SET first_deposit_id = p_deposit_id
     WHERE serial = p_serial AND first_deposit_id IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'label claimed before' USING ERRCODE = 'SPF03';
    END IF;
    -- assumed: the day's total is at most what the plan's award holds for
    IF p_max_credited IS NOT NULL AND coalesce(
           (SELECT t.points FROM daily_totals t
             WHERE t.household_id = v_household AND t.category_id = p_category_id
               AND t.day = p_local_day), 0) > p_max_credited THEN
        RAISE EXCEPTION 'the day total changes the award' USING ERRCODE = 'SPF05';
    END IF;
    IF p_entry_kind IS NOT NULL THEN
        INSERT INTO daily_totals AS t (household_id, category_id, day, points)
        VALUES (v_household, p_category_id, p_local_day, p_points)
        ON CONFLICT (household_id, category_id, day)
        DO UPDATE SET points = t.points + excluded.points;
        v_balance := v_balance + p_points;
        v_count := v_count + 1;
        INSERT INTO ledger_entries (household_id, kind, amount, balance_after, reason,
                                    source_type, source_id, idempotency_key, created_at)
        VALUES (v_household, p_entry_kind, p_points, v_balance, p_entry_reason,
                p_source_type, p_source_id, p_idempotency_key, p_now);
        UPDATE accounts SET balance = v_balance, entry_count = v_count, updated_at = p_now
         WHERE household_id = v_household;
    END IF;
    -- assumed: the deposit id is new
    INSERT INTO deposits (id, kiosk_id, community_id, household_id, label_serial, door,
                          category_id, net_g, occurred_at, local_day, received_at, status,
                          points, rule_id, reason, content_hash)
    VALUES (p_deposit_id, p_kiosk_id, p_community_id, v_household, p_serial, p_door,
            p_category_id, p_net_g, p_occurred_at, p_local_day, p_now, p_status,
            p_points, p_rule_id, p_reason, p_content_hash)
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'deposit id recorded before' USING ERRCODE = 'SPF04';
    END IF;
    out_balance := v_balance;
    RETURN NEXT;
END
$fn$
"""

DROP_SQL = "DROP FUNCTION IF EXISTS sortpoint_ingest_one(text, text, timestamptz, text, text, text, integer, text, text, integer, uuid, integer, integer, integer, timestamptz, date, text, text, integer, integer, text, integer, text, text, text, text, text)"

# 0002's function, to drop on upgrade and to restore on downgrade
CREATE_0002_SQL = r"""
CREATE OR REPLACE FUNCTION sortpoint_ingest_one(p_kiosk_id text, p_nonce text, p_now timestamptz, p_secret text, p_timezone text, p_label_key text, p_rules_mark integer, p_serial text, p_household_code text, p_community_id integer, p_deposit_id uuid, p_door integer, p_category_id integer, p_net_g integer, p_occurred_at timestamptz, p_local_day date, p_content_hash text, p_rule_id integer, p_points integer, p_reason text, p_daily_cap integer, p_entry_kind text, p_entry_reason text, p_source_type text, p_source_id text, p_idempotency_key text)
RETURNS TABLE (out_points integer, out_reason text, out_balance bigint)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    v_household integer;
    v_code text;
    v_revoked timestamptz;
    v_community integer;
    v_balance bigint;
    v_count integer;
    v_total integer;
    v_room integer;
    v_points integer := p_points;
    v_reason text := p_reason;
BEGIN
    -- the nonce, only while the caller's kept kiosk copy is current
    INSERT INTO request_nonces (kiosk_id, nonce, seen_at)
    SELECT p_kiosk_id, p_nonce, p_now
     WHERE EXISTS (SELECT 1 FROM kiosks k JOIN communities c ON c.id = k.community_id
                    WHERE k.id = p_kiosk_id AND k.enabled AND k.secret = p_secret
                      AND c.timezone = p_timezone AND c.label_public_key = p_label_key)
       AND (SELECT coalesce(max(r.id), 0) FROM points_rules r) = p_rules_mark
    ON CONFLICT (kiosk_id, nonce) DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'replayed nonce or stale kiosk copy' USING ERRCODE = 'SPF01';
    END IF;
    -- the household's account lock serialises its labels, totals and entries
    SELECT l.household_id, h.code, l.revoked_at, l.community_id, a.balance, a.entry_count
      INTO v_household, v_code, v_revoked, v_community, v_balance, v_count
      FROM labels l
      JOIN households h ON h.id = l.household_id
      JOIN accounts a ON a.household_id = l.household_id
     WHERE l.serial = p_serial
       FOR NO KEY UPDATE OF a;
    IF NOT FOUND OR v_code <> p_household_code OR v_community <> p_community_id
       OR (v_revoked IS NOT NULL AND v_revoked <= p_occurred_at) THEN
        RAISE EXCEPTION 'label for the general path' USING ERRCODE = 'SPF02';
    END IF;
    UPDATE labels SET first_deposit_id = p_deposit_id
     WHERE serial = p_serial AND first_deposit_id IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'label claimed before' USING ERRCODE = 'SPF03';
    END IF;
    IF p_daily_cap IS NOT NULL THEN
        SELECT t.points INTO v_total FROM daily_totals t
         WHERE t.household_id = v_household AND t.category_id = p_category_id
           AND t.day = p_local_day;
        -- points.score: room = max(0, cap - credited today); more than room is capped
        v_room := greatest(0, p_daily_cap - coalesce(v_total, 0));
        IF v_points > v_room THEN
            v_points := v_room;
            v_reason := 'daily_cap';
        END IF;
    END IF;
    IF v_points > 0 THEN
        INSERT INTO daily_totals AS t (household_id, category_id, day, points)
        VALUES (v_household, p_category_id, p_local_day, v_points)
        ON CONFLICT (household_id, category_id, day)
        DO UPDATE SET points = t.points + excluded.points;
        v_balance := v_balance + v_points;
        v_count := v_count + 1;
        INSERT INTO ledger_entries (household_id, kind, amount, balance_after, reason,
                                    source_type, source_id, idempotency_key, created_at)
        VALUES (v_household, p_entry_kind, v_points, v_balance, p_entry_reason,
                p_source_type, p_source_id, p_idempotency_key, p_now);
        UPDATE accounts SET balance = v_balance, entry_count = v_count, updated_at = p_now
         WHERE household_id = v_household;
    END IF;
    INSERT INTO deposits (id, kiosk_id, community_id, household_id, label_serial, door,
                          category_id, net_g, occurred_at, local_day, received_at, status,
                          points, rule_id, reason, content_hash)
    VALUES (p_deposit_id, p_kiosk_id, p_community_id, v_household, p_serial, p_door,
            p_category_id, p_net_g, p_occurred_at, p_local_day, p_now, 'accepted',
            v_points, p_rule_id, v_reason, p_content_hash)
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'deposit id recorded before' USING ERRCODE = 'SPF04';
    END IF;
    out_points := v_points;
    out_reason := v_reason;
    out_balance := v_balance;
    RETURN NEXT;
END
$fn$
"""

DROP_0002_SQL = "DROP FUNCTION IF EXISTS sortpoint_ingest_one(text, text, timestamptz, text, text, text, integer, text, text, integer, uuid, integer, integer, integer, timestamptz, date, text, integer, integer, text, integer, text, text, text, text, text)"


def upgrade() -> None:
    """Replace 0002's function on PostgreSQL; SQLite has no stored functions (no-op)."""
    if op.get_bind().dialect.name == "postgresql":
        op.get_bind().exec_driver_sql(DROP_0002_SQL)
        op.get_bind().exec_driver_sql(CREATE_SQL)


def downgrade() -> None:
    """Restore 0002's function on PostgreSQL (no-op on SQLite)."""
    if op.get_bind().dialect.name == "postgresql":
        op.get_bind().exec_driver_sql(DROP_SQL)
        op.get_bind().exec_driver_sql(CREATE_0002_SQL)
