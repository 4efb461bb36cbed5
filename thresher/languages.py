"""The language codes of fastText's ``lid.176`` model: what the language stage can ever label a
document with, so a config naming any other code (``eng``, ``english``, ``zh-cn``) keeps nothing.

The list is the model's own labels (``__label__xx`` without the prefix); a test checks it against
the model file. It is a constant because config loading must stay fast and work before the model
is fetched.
"""

from __future__ import annotations

import difflib

LID176_LANGUAGES = frozenset(
    """
    af als am an ar arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce ceb ckb
    co cs cv cy da de diq dsb dty dv el eml en eo es et eu fa fi fr frr fy ga gd gl gn gom gu gv he
    hi hif hr hsb ht hu hy ia id ie ilo io is it ja jbo jv ka kk km kn ko krc ku kv kw ky la lb lez
    li lmo lo lrc lt lv mai mg mhr min mk ml mn mr mrj ms mt mwl my myv mzn nah nap nds ne new nl nn
    no oc or os pa pam pfl pl pms pnb ps pt qu rm ro ru rue sa sah sc scn sco sd sh si sk sl so sq
    sr su sv sw ta te tg th tk tl tr tt tyv ug uk ur uz vec vep vi vls vo wa war wuu xal xmf yi yo
    yue zh
    """.split()
)


def unknown_language(code: object) -> str | None:
    """None for a code lid.176 knows; else why not, with the closest known code when there is one."""
    if isinstance(code, str) and code in LID176_LANGUAGES:
        return None
    text = str(code)
    close = difflib.get_close_matches(text.lower(), LID176_LANGUAGES, n=1, cutoff=0.6)
    if text.lower() in LID176_LANGUAGES:
        close = [text.lower()]
    hint = f" (did you mean {close[0]!r}?)" if close else " (lid.176 codes look like en, de, zh, pt)"
    return f"unknown language code {code!r}{hint}"
