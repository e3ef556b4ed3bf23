"""The page's own script: keyboard shortcuts, tooltips, the tab's title and icon while a job runs,
and the language cookie. Built once per app with the tooltips and script texts in every language.

Shortcuts, as A1111's: Ctrl+Enter generates, Alt+Enter skips, Esc interrupts (in the generation
tab that is showing); in a prompt box Ctrl+Up/Down raise or lower the emphasis of the selection (or
of the word or `(group:weight)` under the cursor) by 0.1, and Alt+Left/Right move the
comma-separated item under the cursor one place.
"""

from __future__ import annotations

import json

from modules.i18n import ENGLISH, Translations
from modules.ui.text import LANGUAGE_JS
from modules.ui.tooltips import TOOLTIPS

# Texts the script itself shows (translated through the same tables).
SCRIPT_TEXTS = ("Name of the new style:",)

KEYBOARD_JS = r"""
() => {
  const tabs = ['txt2img', 'img2img', 'outpaint'];
  const shown = (action) => tabs.map((tab) => document.getElementById(`${tab}-${action}`))
    .find((b) => b && b.getClientRects().length > 0);
  const changed = (area) => area.dispatchEvent(new Event('input', {bubbles: true}));

  // Ctrl+Up / Ctrl+Down: the emphasis of the selection, or of the (group:weight) or word at the cursor.
  const emphasis = (area, delta) => {
    let text = area.value, start = area.selectionStart, end = area.selectionEnd;
    if (start === end) {
      const open = text.lastIndexOf('(', start - 1), close = text.indexOf(')', start);
      if (open >= 0 && close >= 0 && text.lastIndexOf(')', start - 1) < open && /^[^()]*:[-+]?\d*\.?\d+$/.test(text.slice(open + 1, close))) {
        start = open + 1; end = close;
      } else {
        while (start > 0 && /[^\s,()]/.test(text[start - 1])) start--;
        while (end < text.length && /[^\s,()]/.test(text[end])) end++;
      }
      if (start === end) return;
    }
    let inner = text.slice(start, end), weight = 1.0;
    const weighted = text[start - 1] === '(' && text[end] === ')' && /:([-+]?\d*\.?\d+)$/.exec(inner);
    const after = text[start - 1] === '(' && /^:([-+]?\d*\.?\d+)\)/.exec(text.slice(end));  // "(" + selection + ":w)"
    if (weighted) {
      weight = parseFloat(weighted[1]); inner = inner.slice(0, weighted.index); start -= 1; end += 1;
    } else if (after) {
      weight = parseFloat(after[1]); start -= 1; end += after[0].length;
    } else if (/^\(.*:([-+]?\d*\.?\d+)\)$/.test(inner)) {
      const m = /^\((.*):([-+]?\d*\.?\d+)\)$/.exec(inner); inner = m[1]; weight = parseFloat(m[2]);
    }
    weight = Math.round((weight + delta) * 100) / 100;
    const replacement = weight === 1 ? inner : `(${inner}:${weight})`;
    area.value = text.slice(0, start) + replacement + text.slice(end);
    const innerStart = weight === 1 ? start : start + 1;
    area.setSelectionRange(innerStart, innerStart + inner.length);
    changed(area);
  };

  // Alt+Left / Alt+Right: the comma-separated item at the cursor, one place along.
  const moveItem = (area, step) => {
    const items = area.value.split(','), cursor = area.selectionStart;
    let index = 0, seen = 0;
    while (index < items.length - 1 && seen + items[index].length < cursor) { seen += items[index].length + 1; index++; }
    const other = index + step;
    if (other < 0 || other >= items.length) return;
    const trim = (s) => s.trim();
    const words = items.map(trim);
    [words[index], words[other]] = [words[other], words[index]];
    area.value = words.join(', ');
    const position = words.slice(0, other).reduce((n, w) => n + w.length + 2, 0);
    area.setSelectionRange(position, position + words[other].length);
    changed(area);
  };

  document.addEventListener('keydown', (e) => {
    const area = e.target instanceof HTMLTextAreaElement && e.target.closest('[id$="-prompt"]') ? e.target : null;
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { const b = shown('generate'); if (b) { b.click(); e.preventDefault(); } }
    else if (e.key === 'Enter' && e.altKey) { const b = shown('skip'); if (b) { b.click(); e.preventDefault(); } }
    else if (e.key === 'Escape') { const b = shown('interrupt'); if (b) { b.click(); e.preventDefault(); } }
    else if (area && (e.ctrlKey || e.metaKey) && (e.key === 'ArrowUp' || e.key === 'ArrowDown')) {
      emphasis(area, e.key === 'ArrowUp' ? 0.1 : -0.1); e.preventDefault();
    } else if (area && e.altKey && (e.key === 'ArrowLeft' || e.key === 'ArrowRight')) {
      moveItem(area, e.key === 'ArrowLeft' ? -1 : 1); e.preventDefault();
    }
  });
}
"""

# While a job runs, the tab's title and icon show its progress (read from the progress bar).
TITLE_JS = r"""
() => {
  const title = document.title || 'Easel';
  const link = document.querySelector('link[rel~="icon"]') || Object.assign(document.head.appendChild(document.createElement('link')), {rel: 'icon'});
  const icon = link.href;
  const canvas = document.createElement('canvas'); canvas.width = canvas.height = 32;
  let last = null;
  const update = () => {
    const bar = Array.from(document.querySelectorAll('.easel-progress')).find((b) => b.getClientRects().length > 0 && b.dataset.state === 'running');
    const percent = bar ? bar.dataset.percent : null;
    if (percent === last) return;
    last = percent;
    if (percent === null) { document.title = title; if (icon) link.href = icon; return; }
    document.title = `[${percent}%] ${title}`;
    const g = canvas.getContext('2d');
    g.clearRect(0, 0, 32, 32);
    g.fillStyle = '#ddd'; g.beginPath(); g.arc(16, 16, 15, 0, 2 * Math.PI); g.fill();
    g.fillStyle = '#f97316'; g.beginPath(); g.moveTo(16, 16);
    g.arc(16, 16, 15, -Math.PI / 2, -Math.PI / 2 + 2 * Math.PI * percent / 100); g.fill();
    link.href = canvas.toDataURL('image/png');
  };
  new MutationObserver(update).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['data-percent', 'data-state']});
}
"""


def _tables(translations: Translations, texts: list[str]) -> dict[str, dict[str, str]]:
    """{language: {English: translation}} for `texts`, in every language Easel has (English too)."""
    languages = [translations.forced] if translations.forced else translations.languages
    return {language: {text: translations.text(text, language) for text in texts} for language in languages if language}


def tooltip_js(translations: Translations) -> str:
    """Puts each parameter's tooltip (TOOLTIPS, by elem id suffix) on its label, in the page's language."""
    tables = _tables(translations, list(TOOLTIPS.values()))
    suffixes = json.dumps(TOOLTIPS, ensure_ascii=False)
    return f"""
() => {{
  const tips = {suffixes}, tables = {json.dumps(tables, ensure_ascii=False)}, forced = {json.dumps(translations.forced)};
  const language = () => {{
    const lang = forced || document.documentElement.lang || navigator.language || '{ENGLISH}';
    return tables[lang] ? lang : (Object.keys(tables).find((l) => l.split('-')[0] === lang.split('-')[0]) || '{ENGLISH}');
  }};
  let pending = false;
  const apply = () => {{
    pending = false;
    const table = tables[language()] || {{}};
    // shorter suffixes first, so the most specific one ("-hr-scale" over "-scale") sets the title last
    for (const [suffix, text] of Object.entries(tips).sort((a, b) => a[0].length - b[0].length)) {{
      for (const el of document.querySelectorAll(`[id$="${{suffix}}"]`)) {{
        const title = table[text] || text;
        if (el.title !== title) el.title = title;
      }}
    }}
  }};
  apply();
  new MutationObserver(() => {{ if (!pending) {{ pending = true; setTimeout(apply, 200); }} }})
    .observe(document.body, {{subtree: true, childList: true}});
  new MutationObserver(apply).observe(document.documentElement, {{attributes: true, attributeFilter: ['lang']}});
}}
"""


def script_text_js(translations: Translations) -> str:
    """`easelText(english)`: a text the script shows, in the page's language."""
    tables = _tables(translations, list(SCRIPT_TEXTS))
    return f"""
() => {{
  const tables = {json.dumps(tables, ensure_ascii=False)}, forced = {json.dumps(translations.forced)};
  window.easelText = (text) => {{
    const lang = forced || document.documentElement.lang || navigator.language || '{ENGLISH}';
    const table = tables[lang] || tables[Object.keys(tables).find((l) => l.split('-')[0] === lang.split('-')[0])] || {{}};
    return table[text] || text;
  }};
}}
"""


def page_parts(translations: Translations) -> list[str]:
    """Easel's parts of the page script, each a `() => {...}` function."""
    return [LANGUAGE_JS, script_text_js(translations), KEYBOARD_JS, TITLE_JS, tooltip_js(translations)]
