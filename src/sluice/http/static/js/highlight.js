// Syntax highlighting for finished code blocks: a small regex tokenizer per language,
// output as Text nodes inside <span class="tk-…"> (never markup from the code itself).

const C_LIKE_COMMENTS = String.raw`\/\/[^\n]*|\/\*[\s\S]*?(?:\*\/|$)`;
const NUMBER = String.raw`\b(?:0[xX][\da-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?)[a-zA-Z\d]*\b`;
const DQ = String.raw`"(?:[^"\\\n]|\\.)*"?`;
const SQ = String.raw`'(?:[^'\\\n]|\\.)*'?`;
const BT = String.raw`\`(?:[^\`\\]|\\[\s\S])*\`?`;

const words = (text) => new Set(text.split(/\s+/).filter(Boolean));

const JS_KEYWORDS = `async await break case catch class const continue debugger default delete do
  else export extends finally for from function if import in instanceof let new of return
  static super switch throw try typeof var void while with yield get set`;

const LANGUAGES = {
  python: {
    comment: "#[^\\n]*",
    string: String.raw`[rRbBfFuU]{0,2}(?:"""[\s\S]*?(?:"""|$)|'''[\s\S]*?(?:'''|$)|${DQ}|${SQ})`,
    keywords: words(`and as assert async await break class continue def del elif else except
      finally for from global if import in is lambda nonlocal not or pass raise return try
      while with yield match case`),
    literals: words("True False None self cls"),
    extra: "@[A-Za-z_][\\w.]*",
  },
  javascript: {
    comment: C_LIKE_COMMENTS,
    string: `${DQ}|${SQ}|${BT}`,
    keywords: words(JS_KEYWORDS),
    literals: words("true false null undefined this NaN Infinity"),
  },
  typescript: {
    comment: C_LIKE_COMMENTS,
    string: `${DQ}|${SQ}|${BT}`,
    keywords: words(`${JS_KEYWORDS} interface type enum implements declare readonly private
      public protected namespace abstract as keyof infer is satisfies`),
    literals: words("true false null undefined this NaN Infinity"),
    types: words("string number boolean any unknown never void object bigint symbol"),
  },
  rust: {
    comment: C_LIKE_COMMENTS,
    string: String.raw`b?r#*"[\s\S]*?"#*|b?${DQ}|b?'(?:[^'\\\n]|\\.)'`,
    keywords: words(`as async await break const continue crate dyn else enum extern fn for if
      impl in let loop match mod move mut pub ref return static struct super trait type
      unsafe use where while`),
    literals: words("true false self Self None Some Ok Err"),
    types: words("i8 i16 i32 i64 i128 isize u8 u16 u32 u64 u128 usize f32 f64 bool char str String Vec Option Result Box"),
    extra: "'[a-z_]\\w*\\b|#!?\\[[^\\]\\n]*\\]",
  },
  go: {
    comment: C_LIKE_COMMENTS,
    string: `${DQ}|${BT}|${SQ}`,
    keywords: words(`break case chan const continue default defer else fallthrough for func go
      goto if import interface map package range return select struct switch type var`),
    literals: words("true false nil iota"),
    types: words(`bool byte complex64 complex128 error float32 float64 int int8 int16 int32
      int64 rune string uint uint8 uint16 uint32 uint64 uintptr any`),
  },
  sql: {
    comment: String.raw`--[^\n]*|\/\*[\s\S]*?(?:\*\/|$)`,
    string: String.raw`'(?:[^']|'')*'?|"(?:[^"]|"")*"?`,
    keywords: words(`select from where and or not insert into values update set delete create
      table index view drop alter add column primary key foreign references join left right
      inner outer full on group by order having limit offset as distinct union all case when
      then else end is null in exists between like ilike returning with begin commit rollback
      transaction if default unique constraint check cascade asc desc count sum avg min max
      over partition`),
    literals: words("true false null"),
    types: words("int integer bigint smallint text varchar char boolean timestamp timestamptz date numeric real serial jsonb json uuid"),
    caseless: true,
  },
  bash: {
    comment: "(?:^|(?<=\\s))#[^\\n]*",
    string: String.raw`"(?:[^"\\]|\\[\s\S])*"?|'[^']*'?`,
    keywords: words(`if then else elif fi for while until do done case esac function in return
      export local readonly declare set unset shift exit source alias`),
    literals: words("true false"),
    extra: String.raw`\$(?:\{[^}\n]*\}?|[A-Za-z_]\w*|[0-9@#?$!*-])`,
    commands: true,
  },
  json: {
    comment: C_LIKE_COMMENTS,
    string: DQ,
    keywords: words(""),
    literals: words("true false null"),
    keys: true,
  },
  c: {
    comment: C_LIKE_COMMENTS,
    string: `${DQ}|${SQ}`,
    keywords: words(`auto break case catch class const constexpr continue default delete do
      else enum explicit extern for friend goto if inline namespace new operator private
      protected public register return sizeof static struct switch template this throw try
      typedef typename union using virtual volatile while final override abstract extends
      implements import package interface instanceof synchronized throws var val fun when
      object is in`),
    literals: words("true false NULL nullptr null this"),
    types: words("int char float double long short void bool unsigned signed size_t String boolean byte"),
    extra: "#\\s*[a-z]+",
  },
};

const ALIASES = {
  py: "python", python3: "python", js: "javascript", jsx: "javascript", mjs: "javascript",
  cjs: "javascript", node: "javascript", ts: "typescript", tsx: "typescript", rs: "rust",
  golang: "go", sh: "bash", shell: "bash", zsh: "bash", console: "bash", shellsession: "bash",
  postgres: "sql", postgresql: "sql", mysql: "sql", sqlite: "sql", psql: "sql",
  jsonc: "json", json5: "json", cpp: "c", "c++": "c", h: "c", hpp: "c", java: "c",
  cs: "c", csharp: "c", kotlin: "c", kt: "c", swift: "c",
  html: "markup", xml: "markup", svg: "markup", vue: "markup",
};

const compiled = new Map();

function compile(name) {
  if (compiled.has(name)) return compiled.get(name);
  const lang = LANGUAGES[name];
  const parts = [
    `(${lang.comment})`,
    `(${lang.string})`,
    `(${lang.extra || "(?!)"})`,
    `(${NUMBER})`,
    "([A-Za-z_$][\\w$]*)",
  ];
  const result = { lang, re: new RegExp(parts.join("|"), "gm") };
  compiled.set(name, result);
  return result;
}

function span(parent, kind, text) {
  const node = document.createElement("span");
  node.className = `tk-${kind}`;
  node.textContent = text;
  parent.appendChild(node);
}

function wordKind(lang, word, source, end) {
  const key = lang.caseless ? word.toLowerCase() : word;
  if (lang.keywords.has(key)) return "kw";
  if (lang.literals.has(key)) return "lit";
  if (lang.types && lang.types.has(key)) return "type";
  const rest = source.slice(end, end + 2);
  if (rest[0] === "(" || (rest[0] === " " && rest[1] === "(" && !lang.caseless)) return "fn";
  if (!lang.caseless && /^[A-Z][a-z]/.test(word)) return "type";
  return null;
}

function tokenize(code, source, name) {
  const { lang, re } = compile(name);
  let plain = "";
  let last = 0;
  const flush = () => {
    if (plain) code.appendChild(document.createTextNode(plain));
    plain = "";
  };
  re.lastIndex = 0;
  let m;
  while ((m = re.exec(source)) !== null) {
    if (m[0] === "") {
      re.lastIndex += 1;
      continue;
    }
    plain += source.slice(last, m.index);
    last = re.lastIndex;
    let kind = null;
    if (m[1] !== undefined) kind = "com";
    else if (m[2] !== undefined) {
      kind = "str";
      if (lang.keys && /^\s*:/.test(source.slice(last, last + 40))) kind = "key";
    } else if (m[3] !== undefined) kind = "meta";
    else if (m[4] !== undefined) kind = "num";
    else if (m[5] !== undefined) kind = wordKind(lang, m[5], source, last);
    if (kind) {
      flush();
      span(code, kind, m[0]);
    } else {
      plain += m[0];
    }
  }
  plain += source.slice(last);
  flush();
}

function markup(code, source) {
  const re = /(<!--[\s\S]*?(?:-->|$))|(<\/?[A-Za-z][\w:-]*)|((?:[\w:-]+)(?==))|("[^"]*"?|'[^']*'?)|(\/?>)|(&[#\w]+;)/g;
  let last = 0;
  let m;
  while ((m = re.exec(source)) !== null) {
    if (m.index > last) code.appendChild(document.createTextNode(source.slice(last, m.index)));
    last = re.lastIndex;
    const kind = m[1] ? "com" : m[2] ? "tag" : m[3] ? "attr" : m[4] ? "str" : m[5] ? "tag" : "lit";
    span(code, kind, m[0]);
  }
  if (last < source.length) code.appendChild(document.createTextNode(source.slice(last)));
}

/** Fill `code` with `source`, highlighted when `info` names a known language. */
export function highlight(code, source, info) {
  const raw = (info || "").toLowerCase();
  const name = ALIASES[raw] || raw;
  code.replaceChildren();
  if (name) code.dataset.lang = name;
  if (name === "markup") markup(code, source);
  else if (Object.hasOwn(LANGUAGES, name)) tokenize(code, source, name);
  else code.textContent = source;
}
