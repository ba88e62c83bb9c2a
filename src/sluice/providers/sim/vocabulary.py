"""Phrase banks the simulated model writes its answers from.

Each language is a small grammar: a symbol maps to alternatives, and ``{slot}`` inside an
alternative expands to another symbol or to a value the composer supplies (``t`` topic,
``T`` decorated topic, ``id`` inline identifier, ``link``, ``num``, ``ms``, ``lang``,
``index``). Code templates and hostile snippets use the same slots. Everything here is
immutable data; `sluice.providers.sim.text` does the choosing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class TableSchema:
    headers: tuple[str, ...]
    cells: tuple[str, ...]
    #: One letter per column, used when a table gets alignment colons: l, r or c.
    aligns: str


@dataclass(frozen=True)
class Vocabulary:
    grammar: Mapping[str, tuple[str, ...]]
    tables: tuple[TableSchema, ...]
    fallback_topics: tuple[str, ...]
    #: Between sentences of a paragraph: English needs a space, Japanese none.
    joiner: str
    full_stop: str


ENGLISH = Vocabulary(
    grammar=MappingProxyType(
        {
            "intro": (
                "Great question — {t} comes up a lot, and the details matter more than they "
                "first appear.",
                "Here's a practical overview of {T}, with an example you can adapt.",
                "{T} is one of those topics that looks simple until you run it in production.",
                "Let's walk through {t} step by step: what it is, how it works, and where it "
                "tends to go wrong.",
                "Short answer: {t} is mostly a trade-off between {noun} and {noun}.",
                "Sure! Below is a concise guide to {T}, followed by a working example.",
            ),
            "sentence": (
                "{T} is easiest to reason about when you keep the {noun} small and explicit.",
                "In practice, most teams start with a {adj} setup and only add complexity once "
                "{t} becomes a bottleneck.",
                "A common mistake is to treat {t} as an afterthought; it shapes the {noun} from "
                "day one.",
                "You can tune this with {id}, which defaults to {num}.",
                "The {link} covers the edge cases in more detail.",
                "Measure before optimizing: {t} often behaves differently under real traffic.",
                "If you need stronger guarantees, combine {T} with a {adj} {noun}.",
                "*Note* that {t} interacts with {noun}, so test them together.",
                "This keeps the {noun} {adj} without hiding what {t} actually does.",
                "Under load, {T} usually fails at the edges first, so watch {noun} closely.",
                "Most of the time the defaults are fine; change {id} only when metrics say so.",
                "A **{adj}** approach to {t} pays off as soon as a second team depends on it.",
                "Keep the configuration for {t} in one place so it is easy to audit.",
                "When something breaks, the logs around {t} are the first place to look.",
                "For a deeper treatment, see the {link}.",
                "It helps to write down *why* you chose this {t} strategy, not just how.",
                "Roll changes to {t} out gradually and keep a way to switch them off.",
                "Think of {T} as a contract: callers rely on its {noun}, not its internals.",
                "Timeouts and retries belong next to {t}, not scattered across call sites.",
                "Benchmarks on a laptop rarely match production, so budget time for a real test.",
                "The trade-off is {noun}: a {adj} design costs a little more up front.",
                "Start with the simplest thing that works, then let measurements guide you.",
                "Readable code matters more than clever code when {t} misbehaves at 3 a.m.",
                "Once {t} is in place, {noun} tends to improve as a side effect.",
            ),
            "short": (
                "That covers the basics.",
                "Keep it simple at first.",
                "Measure, then tune.",
                "Start small.",
                "Test it under load.",
                "Logs help here.",
                "{T} rewards patience.",
                "Defaults are usually fine.",
                "Document the choice.",
                "Automate the checks.",
            ),
            "closing": (
                "Hope this helps — let me know if you want a deeper dive into {t}.",
                "In short, {T} works best when it is boring, observable and well tested.",
                "If you share more about your setup, I can tailor the {t} example further.",
                "From here, a good next step is to read the {link}.",
                "That should be enough to get {t} running; happy to help with the next step.",
            ),
            "heading": (
                "Overview of {t}",
                "How {t} works",
                "Getting started",
                "A minimal example",
                "Configuration",
                "Common pitfalls",
                "Performance considerations",
                "When to use {t}",
                "Comparing approaches",
                "Best practices",
                "Testing {t}",
                "Key concepts",
                "Trade-offs",
                "Next steps",
            ),
            "item": (
                "{T} keeps the {noun} predictable",
                "Set {id} explicitly instead of relying on defaults",
                "Add metrics around {t} early",
                "Prefer {adj} defaults and document the exceptions",
                "Write a test that exercises {t} under failure",
                "Review the {link} before upgrading",
                "**{approach}** — {desc}",
                "Keep {noun} in mind when sizing {t}",
                "Fail fast and log enough context to debug {t}",
                "Use *feature flags* to roll out {t} changes",
                "Check {noun} after every deploy",
                "Pin versions so {t} behaves the same everywhere",
            ),
            "subitem": (
                "for example, {id}",
                "{desc}",
                "watch the {noun}",
                "see the {link}",
                "defaults to {num}",
            ),
            "quote": (
                "**Note:** {sentence}",
                "**Tip:** {short}",
                "**Warning:** changing {id} in production without a rollback plan is risky.",
                "{sentence}",
            ),
            "code_lead": (
                "Here's a minimal {lang} example:",
                "A small {lang} sketch of {t}:",
                "For instance, in {lang}:",
                "The following {lang} snippet shows the idea:",
            ),
            "link_text": (
                "{t} documentation",
                "official guide",
                "reference docs for {t}",
                "this write-up",
                "{t} FAQ",
            ),
            "adj": (
                "robust",
                "predictable",
                "lightweight",
                "observable",
                "resilient",
                "simple",
                "scalable",
                "maintainable",
                "fault-tolerant",
                "well-tested",
            ),
            "noun": (
                "latency",
                "throughput",
                "error handling",
                "configuration",
                "memory usage",
                "back-pressure",
                "observability",
                "test coverage",
                "deployment",
                "data model",
                "API surface",
                "retry policy",
            ),
            "approach": (
                "Polling",
                "Webhooks",
                "Server-sent events",
                "WebSockets",
                "Batch jobs",
                "In-memory cache",
                "Redis",
                "Message queue",
                "Token bucket",
                "Sliding window",
            ),
            "level": ("Low", "Medium", "High"),
            "yesno": ("Yes", "No", "Partial", "✓", "✗"),
            "desc": (
                "simple to operate",
                "scales horizontally",
                "needs careful tuning",
                "a good default for {t}",
                "best for small teams",
                "adds operational overhead",
                "works well with {noun}",
                "easy to test",
            ),
            "setting_desc": (
                "Upper bound for {t}",
                "Seconds before giving up",
                "Turns {t} on or off",
                "How many retries to allow",
                "Items processed per batch",
            ),
            "step": (
                "Install the dependencies",
                "Configure {t}",
                "Run the tests",
                "Deploy behind a flag",
                "Monitor {noun}",
                "Write the runbook",
            ),
        }
    ),
    tables=(
        TableSchema(
            ("Approach", "Latency", "Complexity", "Best for"),
            ("{approach}", "{ms}", "{level}", "{desc}"),
            "lrcl",
        ),
        TableSchema(
            ("Setting", "Default", "Description"), ("{id}", "{num}", "{setting_desc}"), "lrl"
        ),
        TableSchema(("Step", "What to do", "Done?"), ("{index}", "{step}", "{yesno}"), "rlc"),
        TableSchema(
            ("Option", "Supports {t}", "Notes"), ("{approach}", "{yesno}", "{desc}"), "lcl"
        ),
    ),
    fallback_topics=("streaming responses", "caching", "API design", "background jobs"),
    joiner=" ",
    full_stop=".",
)


JAPANESE = Vocabulary(
    grammar=MappingProxyType(
        {
            "intro": (
                "{T}について、基本から順番に説明します。",
                "良い質問ですね。{T}は一見シンプルですが、実運用では注意すべき点がいくつかあります。",
                "ここでは{T}の概要と、すぐに試せるサンプルコードを紹介します。",
                "{T}を理解するには、まず全体の流れを押さえるのが近道です。",
                "結論から言うと、{t}は{noun}と{noun}のバランスをどう取るかが鍵になります。",
            ),
            "sentence": (
                "{T}は、{adj}システムを作るうえで欠かせない考え方です。",
                "まずは小さな構成で{t}を試し、挙動を確認してから本番環境に広げましょう。",
                "実際の運用では、{noun}を意識して{t}の設定を調整する必要があります。",
                "{T}を導入すると、{noun}の見通しが良くなります。",
                "詳しくは{link}を参照してください。",
                "設定値は{id}のように明示的な名前を付けておくと管理しやすくなります。",
                "計測せずに最適化を始めると、{t}の効果を正しく評価できません。",
                "エラー処理を後回しにすると、{t}がかえって障害の原因になることがあります。",
                "チーム内で{t}の方針を共有しておくと、コードレビューがスムーズになります。",
                "多くの場合、デフォルト値のままでも十分に動作します。",
                "負荷が高い環境では、{noun}がボトルネックになりやすい点に注意してください。",
                "{T}と{noun}を組み合わせることで、より柔軟な構成にできます。",
                "テストを自動化しておけば、{t}の変更も安心して行えます。",
                "ログとメトリクスを整備しておくと、問題の切り分けが容易になります。",
                "特に**{noun}**については、早い段階で方針を決めておくのがおすすめです。",
                "*注意*:古いバージョンでは{t}の挙動が異なる場合があります。",
                "ドキュメントを残しておくと、後から参加したメンバーも{t}を理解しやすくなります。",
                "段階的にロールアウトすることで、{t}に起因するリスクを抑えられます。",
                "{adj}設計を心がけると、将来の変更にも対応しやすくなります。",
                "必要に応じてタイムアウトやリトライ回数を見直しましょう。",
                "{T}の挙動は、{noun}の設定によって大きく変わります。",
                "ローカル環境で再現できるようにしておくと、デバッグが格段に楽になります。",
                "本番環境と同じ条件で検証することが、想定外のトラブルを防ぐ近道です。",
                "外部サービスに依存する場合は、障害時のフォールバックも用意しておきましょう。",
                "{t}の設定値は、一か所で管理しておくと後から見直しやすくなります。",
            ),
            "short": (
                "まずは小さく始めましょう。",
                "計測が第一です。",
                "以上が基本です。",
                "テストは必須です。",
                "ログを確認しましょう。",
                "焦らず進めましょう。",
                "{T}は奥が深いです。",
                "記録を残しましょう。",
            ),
            "closing": (
                "参考になれば幸いです。{t}について詳しく知りたい点があれば、お気軽に聞いてください。",
                "まとめると、{T}は地道な計測と改善の積み重ねが大切です。",
                "環境の詳細を教えていただければ、{t}のより具体的な例を用意できます。",
                "次のステップとして、{link}も読んでみてください。",
            ),
            "heading": (
                "{t}の概要",
                "基本的な仕組み",
                "実装例",
                "注意点",
                "よくある質問",
                "{t}のメリットとデメリット",
                "設定のポイント",
                "パフォーマンスについて",
                "次のステップ",
                "{t}を使うべき場面",
                "ベストプラクティス",
                "テストの書き方",
                "比較表",
            ),
            "item": (
                "{T}の目的を明確にする",
                "{id}を明示的に設定する",
                "{noun}を定期的に監視する",
                "失敗時の挙動をテストで確認する",
                "**{approach}**:{desc}",
                "{link}を事前に確認する",
                "設定値は小さく始めて徐々に調整する",
                "{noun}への影響を計測する",
                "{t}に関するドキュメントを更新する",
                "変更はチームでレビューする",
                "*本番環境*に入れる前に検証する",
            ),
            "subitem": ("例:{id}", "{desc}", "{noun}に注意", "詳細は{link}を参照", "既定値は{num}"),
            "quote": ("**注意:** {sentence}", "**ヒント:** {short}", "**ポイント:** {sentence}"),
            "code_lead": (
                "{lang}での簡単な例を示します。",
                "以下は{t}を{lang}で実装した最小限のサンプルです。",
                "{lang}では次のように書けます。",
            ),
            "link_text": (
                "{t}の公式ドキュメント",
                "公式ガイド",
                "リファレンス",
                "こちらの解説記事",
            ),
            "adj": (
                "信頼性の高い",
                "スケーラブルな",
                "保守しやすい",
                "シンプルな",
                "堅牢な",
                "柔軟な",
                "高速な",
                "安全な",
            ),
            "noun": (
                "レイテンシ",
                "スループット",
                "エラー処理",
                "設定管理",
                "メモリ使用量",
                "可観測性",
                "テストカバレッジ",
                "デプロイ",
                "データモデル",
                "リトライ戦略",
                "キャッシュ",
            ),
            "approach": (
                "ポーリング",
                "Webhook",
                "Server-Sent Events",
                "WebSocket",
                "バッチ処理",
                "インメモリキャッシュ",
                "Redis",
                "メッセージキュー",
                "トークンバケット",
                "スライディングウィンドウ",
            ),
            "level": ("低", "中", "高"),
            "yesno": ("あり", "なし", "一部", "○", "×"),
            "desc": (
                "運用がシンプル",
                "水平スケールしやすい",
                "チューニングが必要",
                "{t}の標準的な選択肢",
                "小規模チーム向け",
                "運用コストが増える",
                "{noun}と相性が良い",
                "テストしやすい",
            ),
            "setting_desc": (
                "{t}の上限値",
                "タイムアウトまでの秒数",
                "{t}の有効・無効",
                "リトライの最大回数",
                "一回に処理する件数",
            ),
            "step": (
                "依存関係をインストールする",
                "{t}を設定する",
                "テストを実行する",
                "フラグ付きでデプロイする",
                "{noun}を監視する",
            ),
        }
    ),
    tables=(
        TableSchema(
            ("方式", "レイテンシ", "複雑さ", "向いている用途"),
            ("{approach}", "{ms}", "{level}", "{desc}"),
            "lrcl",
        ),
        TableSchema(("項目", "デフォルト", "説明"), ("{id}", "{num}", "{setting_desc}"), "lrl"),
        TableSchema(("手順", "内容", "完了"), ("{index}", "{step}", "{yesno}"), "rlc"),
        TableSchema(("選択肢", "{t}対応", "備考"), ("{approach}", "{yesno}", "{desc}"), "lcl"),
    ),
    fallback_topics=("データ処理", "非同期処理", "キャッシュ設計", "ストリーミング"),
    joiner="",
    full_stop="。",
)


#: Words that never become topics: question scaffolding rather than subject matter.
STOPWORDS = frozenset(
    # A word list reads better as text than as 170 quoted strings.
    """
    a about above after again all also am an and any are as at be because been before being
    below between both but by can could did do does doing done down during each few for from
    further get give had has have having he her here hers him his how i if in into is it its
    itself just let like me more most my need no nor not now of off on once only or other our
    out over own please same she should show so some such tell than thank thanks that the
    their them then there these they this those through to too under until up use using very
    was we were what when where which while who whom why will with would write you your
    explain describe example examples work works best good really simple briefly quick help
    want vs versus difference between way ways make makes something anything thing things
    create build implement generate compare fix improve add handle parse parses convert
    """.split()  # noqa: SIM905
)

#: Kanji or katakana runs in a Japanese prompt that ask for something rather than name it.
JAPANESE_STOP_TOPICS = frozenset(
    {
        "説明",
        "教",
        "質問",
        "回答",
        "解説",
        "紹介",
        "簡単",
        "詳",
        "具体的",
        "何",
        "例",
        "方法",
        "仕組",
        "場合",
        "理由",
        "意味",
        "特徴",
        "概要",
        "基本",
        "初心者",
        "違",
    }
)

LANGUAGE_NAMES = MappingProxyType(
    {
        "python": "Python",
        "javascript": "JavaScript",
        "typescript": "TypeScript",
        "rust": "Rust",
        "go": "Go",
        "sql": "SQL",
        "bash": "Bash",
        "json": "JSON",
    }
)

#: A prompt word that makes one code language the natural choice.
LANGUAGE_HINTS = MappingProxyType(
    {
        "python": "python",
        "django": "python",
        "fastapi": "python",
        "javascript": "javascript",
        "js": "javascript",
        "node": "javascript",
        "react": "javascript",
        "typescript": "typescript",
        "ts": "typescript",
        "rust": "rust",
        "cargo": "rust",
        "golang": "go",
        "sql": "sql",
        "postgres": "sql",
        "postgresql": "sql",
        "sqlite": "sql",
        "mysql": "sql",
        "database": "sql",
        "bash": "bash",
        "shell": "bash",
        "curl": "bash",
        "json": "json",
    }
)

#: Code slots: ``ident`` snake_case, ``Ident`` PascalCase, ``topic`` as written, ``num``.
CODE = MappingProxyType(
    {
        "python": (
            """\
from dataclasses import dataclass


@dataclass
class {Ident}:
    \"\"\"Settings for {topic}.\"\"\"

    name: str
    limit: int = {num}

    def describe(self) -> str:
        return f"{self.name}: {topic} (limit={self.limit})\"""",
            """\
import asyncio


async def fetch_{ident}(items: list[str]) -> dict[str, int]:
    \"\"\"Collect {topic} results concurrently.\"\"\"
    results: dict[str, int] = {}
    for item in items:
        await asyncio.sleep(0)
        results[item] = len(item) * {num}
    return results""",
        ),
        "javascript": (
            """\
// {topic}: fetch with a simple retry
export async function load{Ident}(url, retries = {num}) {
  for (let attempt = 0; attempt <= retries; attempt++) {
    const response = await fetch(url);
    if (response.ok) return response.json();
  }
  throw new Error("{topic} request failed");
}""",
        ),
        "typescript": (
            """\
interface {Ident}Options {
  retries: number;
  timeoutMs: number;
}

// Defaults for {topic}; callers override what they need.
export function create{Ident}(options: Partial<{Ident}Options> = {}): {Ident}Options {
  return { retries: {num}, timeoutMs: 1000, ...options };
}""",
        ),
        "rust": (
            """\
/// {topic}
#[derive(Debug, Clone)]
pub struct {Ident} {
    name: String,
    capacity: usize,
}

impl {Ident} {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), capacity: {num} }
    }
}""",
        ),
        "go": (
            """\
package main

import "fmt"

// {Ident} holds the settings for {topic}.
type {Ident} struct {
	Name  string
	Limit int
}

func main() {
	v := {Ident}{Name: "{topic}", Limit: {num}}
	fmt.Printf("%s: %d\\n", v.Name, v.Limit)
}""",
        ),
        "sql": (
            """\
-- {topic}: busiest keys over the last {num} days
SELECT {ident}_id, COUNT(*) AS total
FROM {ident}_events
WHERE created_at > NOW() - INTERVAL '{num} days'
GROUP BY {ident}_id
ORDER BY total DESC
LIMIT 10;""",
        ),
        "bash": (
            """\
#!/usr/bin/env bash
# {topic}: page through the API
set -euo pipefail

for page in $(seq 1 {num}); do
  curl -s "https://example.com/api/{ident}?page=$page" | jq '.items | length'
done""",
        ),
        "json": (
            """\
{
  "{ident}": {
    "enabled": true,
    "limit": {num},
    "description": "{topic}"
  }
}""",
        ),
    }
)

#: Each entry is one construct a renderer must neutralise; the tuple holds its variants.
HOSTILE_REQUIRED: tuple[tuple[str, ...], ...] = (
    (
        "<script>alert(1)</script>",
        "Some text about {t} <script>alert(1)</script> that carries on afterwards.",
    ),
    (
        "<img src=x onerror=alert(1)>",
        "An image of {t}: <img src=x onerror=alert(1)> inline.",
    ),
    ("[click](javascript:alert(1))", "See [the {t} docs](javascript:alert(1)) for details."),
    (
        '<iframe src="https://example.com/embed"></iframe>',
        '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    ),
    ("&lt;script&gt;alert(1)&lt;/script&gt;", "&#60;img src=x onerror=alert(1)&#62;"),
    (
        '[docs](https://example.com/docs "title\\" onmouseover=\\"alert(1)")',
        '[{t}](https://example.com/ "a"><script>alert(1)</script>")',
    ),
    (
        '<a href="javascript:alert(document.cookie)">{t} profile</a>',
        '<a href="javascript:void(0)" onclick="alert(1)">click me</a>',
    ),
    (
        "[open](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "![pixel](data:image/svg+xml,<svg onload=alert(1)>)",
    ),
)

HOSTILE_EXTRAS: tuple[tuple[str, ...], ...] = (
    ("<svg onload=alert(1)>", "<svg><script>alert(1)</script></svg>"),
    ("<style>body { display: none }</style>",),
    ("Autolink: <javascript:alert(1)>",),
    ("[x](&#106;avascript:alert(1))", "Double-encoded: &amp;lt;b&amp;gt;bold&amp;lt;/b&amp;gt;"),
    ("[x](JaVaScRiPt:alert(1))", "[x](  javascript:alert(1))", "[x](java&#x09;script:alert(1))"),
    ('<div onmouseover="alert(1)">hover over {t}</div>',),
    ("<!-- <script>alert(1)</script> -->",),
    ('<math><mi xlink:href="javascript:alert(1)">x</mi></math>',),
    ("| a | b |\n|---|---|\n| <script>alert(1)</script> | <img src=x onerror=alert(1)> |",),
    ("`</code><script>alert(1)</script>`",),
    ("[ref]: javascript:alert(1)\n\nUse [the reference][ref] for {t}.",),
    ('<form action="https://example.com/steal"><input name=q></form>',),
    ('<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',),
    ("Download invoice\u202efdp.exe for {t}.",),
)

#: Deliberately left open: these come last, so nothing after them is swallowed.
HOSTILE_UNTERMINATED_BOLD = (
    "**this bold never closes and keeps talking about {t}",
    "**unterminated emphasis before the end",
)
HOSTILE_UNTERMINATED_FENCE = (
    "```html\n<script>alert(1)</script>\n<p>the fence above is never closed",
    "```\nunterminated fence about {t}",
)
