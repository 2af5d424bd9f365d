# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The fleet report's filters (playbooks/report.yml): ``report_rows`` and ``report_html``.

``report_rows`` turns what the report playbook read from each device (the registered results of
encedo_info, encedo_attestation, encedo_config and encedo_audit_log in check mode, the key list and
the role's pending-reboot record) into one row per device with the reasons it needs attention, the
devices that need attention first. ``report_html`` renders the rows as one self-contained HTML page
(inline style, no script, no external asset; every value escaped). Documented in report_rows.yml and
report_html.yml next to this file.
"""

from __future__ import annotations

import datetime
import html

#: A TLS certificate with fewer days left than this needs attention (the role's renewal default).
TLS_DAYS = 30


def _ran(result):
    """A registered result that ran (not skipped, not missing)."""
    return isinstance(result, dict) and bool(result) and not result.get('skipped')


def _failure(result):
    return result.get('msg') or 'failed' if _ran(result) and result.get('failed') else None


def _utc(seconds):
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def _attestation(result, attention):
    if not _ran(result):
        return None
    failure = _failure(result)
    att = result.get('attestation') or {}
    row = dict(verified=bool(att.get('verified')) and not failure, not_after=att.get('not_after'), error=failure)
    if result.get('supported') is False:
        row.update(verified=None, error='no attestation on this model')
    elif not row['verified']:
        attention.append('attestation not verified' + (': ' + failure if failure else ''))
    return row


def _tls(info, attention, days):
    cert = info.get('certificate')
    if not isinstance(cert, dict):
        return None
    row = dict(issuer=cert.get('issuer'), days_left=cert.get('days_remaining'), not_after=cert.get('not_after'))
    if isinstance(row['days_left'], int) and row['days_left'] < days:
        attention.append('TLS certificate: %d days left' % row['days_left'] if row['days_left'] >= 0 else 'TLS certificate expired')
    return row


def _drift(result, attention):
    if not _ran(result):
        return None
    failure = _failure(result)
    if failure:
        attention.append('configuration not read: ' + failure)
        return None
    fields = sorted(result.get('sent') or [])
    if fields:
        attention.append('configuration differs: ' + ', '.join(fields))
    return fields


def _keys(result):
    if not _ran(result) or result.get('failed'):
        return None
    total = (result.get('json') or {}).get('total')
    return total if isinstance(total, int) else None


def _audit(result, attention):
    if not _ran(result):
        return None
    failure = _failure(result)
    row = dict(verified=result.get('verified_total'), not_fetched=len(result.get('files') or []),
               quarantined=list(result.get('quarantined') or []), error=failure)
    if result.get('supported') is False:
        row['error'] = 'no log files on this model'
    elif failure:
        attention.append('audit log: ' + failure)
    return row


def report_row(data, days=TLS_DAYS):
    """One device's row from what the report playbook read (``data``: host, url, info, attestation, config, keys, audit, pending)."""
    info = data.get('info') or {}
    attention = []
    row = dict(host=data.get('host'), url=data.get('url'), reachable=_ran(info) and not info.get('failed'), error=None)
    if not row['reachable']:
        row['error'] = _failure(info) or 'not read'
        row['attention'] = ['unreachable: ' + row['error']]
        return row
    status = info.get('status') or {}
    row.update(model=info.get('model'), firmware=info.get('firmware'), personalised=info.get('personalised'),
               clock_set=info.get('rtc_set'), clock=_utc(status.get('time')) if info.get('rtc_set') else None)
    if row['personalised'] is False:
        attention.append('not personalised')
    if row['clock_set'] is False:
        attention.append('clock not set (no check-in since power-up)')
    row['attestation'] = _attestation(data.get('attestation'), attention)
    row['tls'] = _tls(info, attention, days)
    row['drift'] = _drift(data.get('config'), attention)
    pending = data.get('pending') or {}
    row['pending_reboot'] = bool(pending)
    row['pending_reasons'] = list(pending.get('reasons') or [])
    if pending:
        attention.append('reboot pending' + (' (%s)' % ', '.join(row['pending_reasons']) if row['pending_reasons'] else ''))
    row['keys'] = _keys(data.get('keys'))
    row['audit'] = _audit(data.get('audit'), attention)
    row['attention'] = attention
    return row


def report_rows(devices, days=TLS_DAYS):
    """Rows of ``devices`` (see :func:`report_row`), those that need attention first, each group by host name."""
    rows = [report_row(d, int(days)) for d in devices]
    return sorted(rows, key=lambda r: (not r['attention'], str(r['host'])))


# ------------------------------------------------------------------ HTML

STYLE = '''
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem;color:#1d2330;background:#fff}
h1{font-size:1.5rem;margin:0 0 .3rem}
p.summary{margin:0 0 1.2rem;color:#4a5263}
p.summary strong.bad{color:#b42318}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #e3e6ec;padding:.45rem .6rem;text-align:left;vertical-align:top}
th{background:#f4f6f9;font-weight:600}
tr.attention td{background:#fff4f2}
tr.attention td:first-child{border-left:6px solid #d92d20}
tr.ok td:first-child{border-left:6px solid #12b76a}
.badge{display:inline-block;border-radius:4px;padding:.05rem .4rem;font-size:.75rem;font-weight:600}
.badge.bad{background:#d92d20;color:#fff}
.badge.good{background:#d1fadf;color:#05603a}
ul.why{margin:.3rem 0 0;padding-left:1.1rem;color:#b42318}
.muted{color:#8a93a6}
'''


def _cell(value, empty='-'):
    if value is None or value == '' or value == []:
        return '<span class="muted">%s</span>' % empty
    if value is True:
        return 'yes'
    if value is False:
        return 'no'
    return html.escape(str(value))


def _device_cell(row):
    out = '<strong>%s</strong><br><span class="muted">%s</span><br>' % (_cell(row['host']), _cell(row.get('url')))
    if row['attention']:
        out += '<span class="badge bad">NEEDS ATTENTION</span><ul class="why">%s</ul>' % ''.join(
            '<li>%s</li>' % html.escape(reason) for reason in row['attention'])
    else:
        out += '<span class="badge good">OK</span>'
    return out


def _columns(row):
    if not row['reachable']:
        return ['<td colspan="10">unreachable: %s</td>' % _cell(row['error'])]
    att, tls, audit = row.get('attestation'), row.get('tls'), row.get('audit')
    cells = [
        _cell(row.get('model')), _cell(row.get('firmware')), _cell(row.get('personalised')),
        _cell(row.get('clock'), 'not set') if row.get('clock_set') else 'not set',
        (_cell(att['verified'] if att['verified'] is not None else att.get('error')) + '<br><span class="muted">expires %s</span>'
         % _cell(att.get('not_after'))) if att else _cell(None, 'not checked'),
        ('%s<br><span class="muted">%s days left</span>' % (_cell(tls.get('issuer')), _cell(tls.get('days_left')))) if tls else _cell(None),
        (_cell(', '.join(row['drift'])) if row['drift'] else 'none') if row.get('drift') is not None else _cell(None, 'not checked'),
        _cell(row.get('pending_reboot')),
        _cell(row.get('keys')),
        ('%s verified, %s not fetched, %d quarantined' % (_cell(audit.get('verified')), _cell(audit.get('not_fetched')),
                                                          len(audit['quarantined']))) if audit else _cell(None, 'not checked'),
    ]
    return ['<td>%s</td>' % cell for cell in cells]


HEADERS = ('Device', 'Model', 'Firmware', 'Personalised', 'Clock (UTC)', 'Attestation verified', 'TLS certificate',
           'Configuration drift', 'Reboot pending', 'Keys', 'Audit log files')


def report_html(rows, generated=None):
    """A self-contained HTML page of ``rows`` (from report_rows); ``generated``: when the report was made."""
    need = sum(1 for r in rows if r['attention'])
    body = []
    for row in rows:
        mark = 'attention' if row['attention'] else 'ok'
        body.append('<tr class="%s" data-host="%s"><td>%s</td>%s</tr>'
                    % (mark, html.escape(str(row['host'])), _device_cell(row), ''.join(_columns(row))))
    summary = '%d device(s); <strong class="%s">%d need attention</strong>' % (len(rows), 'bad' if need else '', need)
    if generated:
        summary += ' &middot; generated %s' % html.escape(str(generated))
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Encedo HEM fleet report</title>'
            '<style>%s</style></head><body><h1>Encedo HEM fleet report</h1><p class="summary">%s</p>'
            '<table><thead><tr>%s</tr></thead><tbody>\n%s\n</tbody></table></body></html>\n'
            % (STYLE, summary, ''.join('<th>%s</th>' % h for h in HEADERS), '\n'.join(body)))


class FilterModule(object):
    def filters(self):
        return {'report_rows': report_rows, 'report_html': report_html}
