"""Text report of a ledger for `gateway ledger`: the tables, then the reconciliation summary.

Formats what the ledger returns and nothing more: no database access, no
decisions. The ledger holds masked card numbers only, so neither does this.
"""


def _table(title, headings, rows):
    lines = ["%s (%d)" % (title, len(rows))]
    if not rows:
        return lines
    cells = [headings] + [["-" if value is None else str(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headings))]
    for row in cells:
        lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return lines


def _money(amounts, indent):
    if not amounts:
        return [indent + "(no orders)"]
    return [indent + "%s  charged %d  refunded %d  net %d"
            % (currency, money["charged"], money["refunded"], money["net"])
            for currency, money in sorted(amounts.items())]


def format_reconciliation(summary):
    """The reconciliation block (from Ledger.reconcile())."""
    lines = ["Reconciliation"]
    for name, merchant in sorted(summary["merchants"].items()):
        lines.append("  merchant %s: %d tokens, %d orders (%d paid, %d failed, %d authorized, %d cancelled),"
                     " %d refunds" % (name, merchant["tokens"], merchant["orders"], merchant["paid"],
                                      merchant["failed"], merchant["authorized"], merchant["cancelled"],
                                      merchant["refunds"]))
        lines += _money(merchant["amounts"], "    ")
    lines.append("  all merchants:")
    lines += _money(summary["totals"], "    ")
    if summary["consistent"]:
        lines.append("  consistent: yes")
    else:
        lines.append("  consistent: NO, %d problems:" % len(summary["problems"]))
        lines += ["    " + problem for problem in summary["problems"]]
    return lines


def format_ledger(dump, summary, title):
    """The whole report as one string."""
    lines = ["Ledger %s" % title, ""]
    lines += _table("Tokens", ["created", "token", "merchant", "card", "type", "outcome", "used by"],
                    [[t["created"], t["token"], t["merchant"], t["masked_pan"], t["card_profile"],
                      t["outcome"], t["used_by"]] for t in dump["tokens"]])
    lines.append("")
    lines += _table("Orders", ["created", "order code", "merchant", "customer order code", "amount", "ccy",
                               "status", "charged", "refunded", "reason"],
                    [[o["created"], o["order_code"], o["merchant"], o["customer_order_code"], o["amount"],
                      o["currency"], o["status"], o["charged"], o["refunded"], o["reason"]]
                     for o in dump["orders"]])
    lines.append("")
    lines += _table("Refunds", ["created", "order code", "merchant", "amount", "ccy"],
                    [[r["created"], r["order_code"], r["merchant"], r["amount"], r["currency"]]
                     for r in dump["refunds"]])
    lines.append("")
    lines += _table("Events", ["#", "time", "kind", "merchant", "order code", "token", "amount", "ccy",
                               "status"],
                    [[e["id"], e["ts"], e["kind"], e["merchant"], e["order_code"], e["token"], e["amount"],
                      e["currency"], e["status"]] for e in dump["events"]])
    lines.append("")
    lines += format_reconciliation(summary)
    return "\n".join(lines) + "\n"
