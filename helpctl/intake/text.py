"""Read a message's text: split off quoted text and guess its language and case kind.

Also find the users, groups and organizations it names, and read DKIM and SPF failures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from helpctl.cases.model import Subjects

# The Help Channel's own address: it is on every client message and never a subject.
HELP_ADDRESS = "help@fluidattacks.com"

# Hosts whose `/orgs/<organization>/groups/<group>` links name platform groups.
PLATFORM_WEB_HOSTS = ("app.fluidattacks.com",)


# ---------------------------------------------------------------------------------------
# New text and quoted text

_ATTRIBUTION_START = re.compile(r"^\s*(on|el)\s", re.IGNORECASE)
_ATTRIBUTION_END = re.compile(r"\b(wrote|escribió|escribio)\s*:\s*$", re.IGNORECASE)
_FORWARD_SEPARATOR = re.compile(
    r"^\s*(-{2,}\s*(forwarded message|mensaje reenviado)\s*-{2,}|begin forwarded message:|inicio del mensaje reenviado:)\s*$",
    re.IGNORECASE,
)
_ORIGINAL_SEPARATOR = re.compile(r"^\s*-{2,}\s*(original message|mensaje original)\s*-{2,}\s*$", re.IGNORECASE)
_HEADER_BLOCK_FROM = re.compile(r"^\s*\*?(from|de)\s*:\*?\s+\S", re.IGNORECASE)
_HEADER_BLOCK_NEXT = re.compile(r"^\s*\*?(sent|date|to|subject|enviado|fecha|para|asunto)\s*:", re.IGNORECASE)
_RULE_LINE = re.compile(r"^\s*([-_=*])\1{4,}\s*$")


def split_quoted(text: str) -> tuple[str, str, bool]:
    """Split a plain-text body into the new text and the quoted older text.

    Quoted text starts at an attribution line ("On ... wrote:", "El ... escribió:"), at a
    forward or "Original Message" separator, or at an Outlook header block ("From:" then
    "Sent:"). Lines starting with ">" are quoted wherever they are. After an attribution
    that is followed by ">" lines, unquoted lines are replies written between the quotes
    and stay new text. Returns the new text, the quoted text and whether a forward
    separator was found.
    """
    lines = text.split("\n")
    cut, kind = _find_quote_start(lines)
    head = lines if cut is None else lines[:cut]
    tail = [] if cut is None else lines[cut:]

    new_lines = [line for line in head if not _is_quote_line(line)]
    quoted_lines = [line for line in head if _is_quote_line(line)]
    if kind == "attribution" and _next_text_is_quoted(tail):
        attribution_length = _attribution_length(tail, 0)
        quoted_lines += tail[:attribution_length]
        for line in tail[attribution_length:]:
            (quoted_lines if _is_quote_line(line) or not line.strip() else new_lines).append(line)
    else:
        quoted_lines += tail

    while new_lines and (not new_lines[-1].strip() or _RULE_LINE.match(new_lines[-1])):
        new_lines.pop()
    return _tidy_lines("\n".join(new_lines)), _tidy_lines("\n".join(quoted_lines)), kind == "forward"


def _is_quote_line(line: str) -> bool:
    return line.lstrip().startswith(">")


def _attribution_length(lines: list[str], index: int) -> int:
    """Return how many lines (1 to 3) an attribution starting at `index` spans, or 0."""
    first = lines[index]
    if not _ATTRIBUTION_START.match(first):
        return 0
    if _ATTRIBUTION_END.search(first):
        return 1

    # Mail clients wrap a long attribution, but a line that ends a sentence or a line
    # followed by another "On"/"El" line is ordinary text.
    if re.search(r"[.!?:]\s*$", first):
        return 0
    for length in (2, 3):
        following = lines[index + 1 : index + length]
        if len(following) < length - 1 or any(_ATTRIBUTION_START.match(line) for line in following):
            return 0
        if _ATTRIBUTION_END.search(" ".join(lines[index : index + length])):
            return length
    return 0


def _find_quote_start(lines: list[str]) -> tuple[int | None, str | None]:
    for index, line in enumerate(lines):
        if _is_quote_line(line):
            continue
        if _attribution_length(lines, index):
            return index, "attribution"
        if _FORWARD_SEPARATOR.match(line):
            return index, "forward"
        if _ORIGINAL_SEPARATOR.match(line):
            return index, "original"
        following = lines[index + 1 : index + 5]
        if _HEADER_BLOCK_FROM.match(line) and any(_HEADER_BLOCK_NEXT.match(item) for item in following):
            return index, "headers"
    return None, None


def _next_text_is_quoted(lines: list[str]) -> bool:
    after = lines[_attribution_length(lines, 0) :]
    return next((_is_quote_line(line) for line in after if line.strip()), False)


def _tidy_lines(text: str) -> str:
    """Strip trailing spaces, collapse runs of blank lines and trim the ends."""
    lines = [line.rstrip() for line in text.split("\n")]
    tidy: list[str] = []
    for line in lines:
        if not line and tidy and not tidy[-1]:
            continue
        tidy.append(line)
    return "\n".join(tidy).strip("\n")


# ---------------------------------------------------------------------------------------
# Language, kind and subjects

_SPANISH_WORDS = frozenset(
    "de la que el en los las del por para con una es se al como pero más mas hola gracias buenos buenas "
    "días dias saludos tenemos nuestro nuestra puede pueden favor están está esta son muy también sin "
    "sobre cuando aparecen estimados cordial hay ya nos mi su ayuda equipo".split()
)
_ENGLISH_WORDS = frozenset(
    "the and to of is in for that with we you it on are this have has can please thanks thank hello "
    "hi our but not be from as was there they would could when which what dear regards team help".split()
)


def guess_language(text: str) -> str:
    """Guess "es" or "en" by counting frequent words of each language. A tie gives "en"."""
    text = re.sub(r"\S+@\S+|https?://\S+", " ", text.lower())
    words = re.findall(r"[a-záéíóúüñ]+", text)
    spanish = sum(word in _SPANISH_WORDS for word in words)
    english = sum(word in _ENGLISH_WORDS for word in words)
    return "es" if spanish > english else "en"


_ACCESS_VERBS = (
    r"add|remove|revoke|grant|give|delete|invite|deactivate|"
    r"agregar|agregue|agreguen|añadir|añada|añadan|adicionar|quitar|quite|quiten|eliminar|elimine|eliminen|"
    r"remover|revocar|revoque|revoquen|retirar|otorgar|otorgue|conceder|invitar|dar|den|dé"
)
_ACCESS_OBJECTS = r"access|accesses|user|users|member|members|permissions?|roles?|acceso|accesos|usuari[oa]s?|miembros?|permisos?|rol|roles"


def _same_sentence(limit: int) -> str:
    """Return a pattern for up to `limit` characters of one sentence.

    A dot ends the sentence only when a space or the end follows, so an address such as
    "maria.lopez@kiwicorp.co" stays inside it.
    """
    return rf"(?:[^.\n]|\.(?=\S)){{0,{limit}}}"


_KIND_PATTERNS = (
    (
        "access-request",
        (
            rf"\b({_ACCESS_VERBS})\b{_same_sentence(60)}\b({_ACCESS_OBJECTS})\b",
            rf"\b({_ACCESS_VERBS})\b{_same_sentence(60)}@",
            rf"\bchange\b{_same_sentence(40)}\broles?\b",
            rf"\bcambi\w*\b{_same_sentence(40)}\brol(es)?\b",
        ),
    ),
    (
        "feature-request",
        (
            r"\bwe would like\b",
            r"\bwe'd like\b",
            r"\bit would be (great|nice|useful|helpful)\b",
            r"\b(could|can) you (please )?add\b",
            r"\bwould it be possible\b",
            r"\bfeature request\b",
            r"\b(me|nos) gustar[ií]a\b",
            r"\bser[ií]a (bueno|útil|genial|ideal|posible)\b",
            r"\b(podr[ií]an|pueden) (agregar|añadir|incluir)\b",
        ),
    ),
    (
        "problem",
        (
            r"\berror(s|es)?\b",
            r"\bfail(s|ed|ing|ure)?\b",
            r"\b(broken|crash\w*|bug)\b",
            r"\bnot (working|showing|loading|appearing)\b",
            r"\b(doesn't|does not|don't|do not|didn't|did not) (work|show|load|appear)\b",
            r"\b(can't|cannot|can not|unable to) (see|access|log ?in|download|open|find)\b",
            r"\bno (funciona|funcionan|aparece|aparecen|carga|cargan|se ve|se ven|muestra|muestran|puedo|podemos|puede|pueden)\b",
            r"\bfall(a|an|ó|o)\b",
            r"\bproblemas?\b",
        ),
    ),
)


def guess_kind(text: str) -> str:
    """Guess the case kind from the wording. The first kind with a matching pattern wins.

    Access requests (add, remove or revoke access, change a role) come first, then
    feature requests ("we would like", "me gustaría"), then problems (error, fails, no
    funciona). Anything else is a question.
    """
    lowered = text.lower()
    for kind, patterns in _KIND_PATTERNS:
        if any(re.search(pattern, lowered) for pattern in patterns):
            return kind
    return "question"


_EMAIL = re.compile(r"(?<![\w.+%-])[a-z0-9][a-z0-9._%+-]*@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,}\b", re.IGNORECASE)
_PLATFORM_URL = re.compile(
    r"https?://(?P<host>[a-z0-9.-]+)(?::\d+)?/orgs/(?P<organization>[a-z0-9]+)(?![\w-])(?:/groups/(?P<group>[a-z0-9]+)(?![\w-]))?",
    re.IGNORECASE,
)
_GROUP_KEYWORD = re.compile(r"\b(group|grupo)(s)?\b", re.IGNORECASE)
_ORGANIZATION_KEYWORD = re.compile(r"\b(organi[sz]ation|organizaci[oó]n)(s|es)?\b", re.IGNORECASE)
_NAME_CANDIDATE = re.compile(r"^[a-z][a-z0-9]{2,}$")
_NAME_FILLERS = frozenset({"name", "named", "called", "llamado", "llamada", "denominado", "nombre", "id"})
_LIST_SEPARATORS = frozenset({",", "and", "or", "y", "e", "o", "u", "&", "/"})

# Lowercase words that can follow "group" or "organization" in an ordinary sentence:
# function words, frequent verbs and the platform's own vocabulary. Candidates must already
# be lowercase ASCII of 3 or more characters, so shorter and accented words need no entry.
# NOTE: no such list is complete. Passing the platform's group names as `known_groups`
# lets a caller find groups that this list would not protect.
_ORDINARY_WORDS = (
    frozenset(
        """
        the and but for nor yet are was were been being has have had having does did doing done
        will would shall should can could may might must not all any both each every few many most
        more less much some such other another same new old own whole entire several none nothing
        that this these those which who whom whose what where when why how whether while since until
        than then there here too very just only also even still again already always never ever
        about above across after against along among around before behind below beneath beside
        besides between beyond despite down during except from inside into like near off onto out
        outside over past through throughout till toward towards under underneath unlike upon
        via with within without
        its our ours your yours their theirs his her hers him them they she you one ones
        please thanks thank hello dear regards sorry hope today yesterday tomorrow now soon
        seems seem seemed appears appear appeared shows show showed showing shown keeps keep kept
        stopped started stops starts works work worked working looks look loads load loading
        lists list listed says say said gets get got gives give gave makes make made
        still isnt doesnt dont didnt wasnt cant cannot wont arent
        called named name level members member users user settings setting policy policies
        manager managers role roles access page tab view owner admin administrator leader chat
        info information details data account accounts project projects team teams plan plans
        service services subscription vulnerabilities vulnerability findings finding events event
        report reports dashboard analytics organization organizations group groups portal platform
        del los las una unos unas que son esta este ese esa eso esto estos estas esos esas aquel
        mis tus sus nuestro nuestra nuestros nuestras vuestro vuestra
        para por con sin sobre tras desde hasta hacia entre contra durante mediante ante bajo segun
        les nos como pero porque pues aunque cuando donde mientras cual cuales quien quienes
        todo toda todos todas cada otro otra otros otras mismo misma mismos mismas nuevo nueva
        algun alguno alguna algunos algunas ningun ninguno ninguna varios varias muchos muchas
        tambien tampoco solo sigue siguen estan estaba estaban tiene tienen tenia tenian hay
        habia muestra muestran mostraba aparece aparecen aparecia funciona funcionan carga cargan
        dice dicen queda quedan quedo dejo dejaron parece parecen puede pueden podia
        hoy ayer manana ahora ya aun luego antes despues siempre nunca
        trabajo usuarios usuario miembros miembro nombre llamado acceso rol roles equipo cuenta
        cuentas proyecto proyectos reporte reportes tablero plataforma servicio suscripcion
        grupo grupos organizacion organizaciones hola gracias saludos favor
        """.split()
    )
    | _SPANISH_WORDS
    | _ENGLISH_WORDS
)


def extract_subjects(text: str, known_groups: set[str] | None = None, *, exclude: Iterable[str] = ()) -> Subjects:
    """Find the users, groups and organizations that a request mentions.

    Users are the e-mail addresses in the text, except those in `exclude` (usually the
    requester) and the Help Channel's address. Groups are lowercase alphanumeric words
    right after "group", "grupo", "groups" or "grupos", the group part of platform links
    (`https://app.fluidattacks.com/orgs/<organization>/groups/<group>`) and any word in
    `known_groups`. Organizations come from such links and from words after
    "organization" or "organización". Words on a list of ordinary English and Spanish
    words are not taken as names unless `known_groups` contains them.
    """
    excluded = {address.lower() for address in exclude} | {HELP_ADDRESS}
    known = {name.lower() for name in known_groups or ()}

    users = [address for address in _unique(match.lower() for match in _EMAIL.findall(text)) if address not in excluded]
    groups: list[str] = []
    organizations: list[str] = []
    for match in _PLATFORM_URL.finditer(text):
        if match.group("host").lower() not in PLATFORM_WEB_HOSTS:
            continue
        organizations.append(match.group("organization").lower())
        if match.group("group"):
            groups.append(match.group("group").lower())

    # Words inside links and addresses ("/groups/<name>" of other sites) are not read.
    without_links = re.sub(r"https?://\S+", " ", _EMAIL.sub(" ", text))
    groups += _names_after(_GROUP_KEYWORD, without_links, known)
    groups += [word for word in re.findall(r"[a-z0-9]+", without_links.lower()) if word in known]
    organizations += _names_after(_ORGANIZATION_KEYWORD, without_links, set())
    return Subjects(users=users, groups=_unique(groups), organizations=_unique(organizations))


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _names_after(keyword: re.Pattern[str], text: str, known: set[str]) -> list[str]:
    """Return the names written right after each keyword, several after a plural one."""
    names: list[str] = []
    for match in keyword.finditer(text):
        plural = bool(match.group(2))
        rest = text[match.end() : match.end() + 160]
        rest = re.split(r"[.!?;]\s|[.!?;]$|\n", rest, maxsplit=1)[0]
        tokens = re.findall(r"[\w.@'-]+|[,&/]", rest)
        names += _read_names(tokens, plural, known)
    return names


def _read_names(tokens: list[str], plural: bool, known: set[str]) -> list[str]:
    names: list[str] = []
    fillers = 0
    expecting_name = True
    for token in tokens:
        token = token.strip(".'-")
        if expecting_name and not names and token.lower() in _NAME_FILLERS and fillers < 2:
            fillers += 1
            continue

        if expecting_name:
            if not _is_name(token, known):
                break
            names.append(token.lower())
            if not plural:
                break
            expecting_name = False
        elif token.lower() in _LIST_SEPARATORS:
            expecting_name = True
        else:
            break
    return names


def _is_name(token: str, known: set[str]) -> bool:
    if token.lower() in known:
        return True
    return bool(_NAME_CANDIDATE.match(token)) and token not in _ORDINARY_WORDS


_AUTHENTICATION_COMMENT = re.compile(r"\([^()]*\)")
_AUTHENTICATION_RESULT = re.compile(r"(?:^|[;\s])(dkim|spf)\s*=\s*([a-z]+)")


def failed_authentication(values: Iterable[str]) -> list[str]:
    """Return the explicit DKIM and SPF failures in Authentication-Results values.

    Only `dkim=fail`, `spf=fail` and `spf=softfail` count, so a missing result or
    `none`, `neutral` or `temperror` is no failure. The results are returned as written,
    for example `["dkim=fail"]`.
    NOTE: a sender can add a forged Authentication-Results header. Only the one added by
    the receiving server is trustworthy, and this reads them all.
    """
    failures: list[str] = []
    for value in values:
        cleaned = _AUTHENTICATION_COMMENT.sub(" ", value.lower())
        for method, result in _AUTHENTICATION_RESULT.findall(cleaned):
            if result == "fail" or (method == "spf" and result == "softfail"):
                failures.append(f"{method}={result}")
    return _unique(failures)
