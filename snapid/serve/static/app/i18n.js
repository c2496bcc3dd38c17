// Every visible string of the identification and phone pages, in English and Korean.
// Elements carry data-i18n="key" (text), data-i18n-label="key" (aria-label) or
// data-i18n-placeholder="key"; scripts call SnapidI18n.t(key, {vars}).
"use strict";

(function () {
  const STRINGS = {
    en: {
      "title": "What is this?",
      "subtitle": "Give one to five photos; the model says what is in them.",
      "lang.label": "Language",
      "give.title": "Photos",
      "give.drop": "Drop photos here",
      "give.or": "or",
      "give.pick": "Choose photos",
      "give.hint": "1 to 5 photos. They are made smaller in your browser before sending.",
      "give.each": "Different items (one item per photo; warns when they must not go together)",
      "give.consent": "Keep my photos to improve the model (optional)",
      "give.consent_review": "With your consent, photos the model is unsure about may be reviewed by a person to teach it.",
      "give.subset": "Only among",
      "give.subset_all": "all classes",
      "give.why": "Why? Show where in the photo the model looked",
      "give.too_many": "Only the first {n} photos are used.",
      "give.not_kept": "Your photos were not kept: the server's photo storage is full.",
      "give.not_image": "{name} is not a photo; it was left out.",
      "camera.open": "Use the camera",
      "camera.shot": "Take the photo",
      "camera.close": "Close the camera",
      "camera.video": "Camera preview",
      "camera.denied": "The camera is not available ({why}). Use the button below or choose photos instead.",
      "camera.fallback": "Take a photo",
      "phone.open": "Use my phone (QR code)",
      "phone.close": "Stop",
      "phone.hint": "Scan this code with your phone and take a photo: the answer shows here.",
      "phone.qr": "QR code of the phone upload page",
      "phone.waiting": "Waiting for photos from the phone…",
      "phone.received": "{n} photo(s) received from the phone.",
      "phone.expired": "The QR code has expired.",
      "phone.again": "New QR code",
      "phone.failed": "The phone hand-off could not start: {why}",
      "phone.polling": "Live updates unavailable; checking every few seconds.",
      "loading": "Identifying…",
      "result.title": "Result",
      "result.photo": "Photo {n}",
      "result.object": "Object {n}",
      "result.detections": "Objects found in the photo",
      "result.boxes_alt": "Your photo, with {n} object(s) outlined",
      "result.fallback": "No object was found in the photo, so the whole photo was identified.",
      "result.unknown": "Not sure",
      "result.unknown_hint": "The model is not confident: this may be something it does not know. Best guesses:",
      "result.guesses": "Scores",
      "result.why": "Where the model looked for {name}: brighter is stronger evidence",
      "result.references": "Training photos of {name} most like yours",
      "result.reference": "A training photo of {name} ({pct} similar)",
      "result.score": "{name}: {pct}",
      "result.card": "About {name}",
      "result.scientific": "Scientific name",
      "result.taxonomy": "Classification",
      "rank.species": "species", "rank.genus": "genus", "rank.family": "family", "rank.order": "order",
      "result.fields": "Details",
      "result.links": "Links",
      "result.image_link": "Picture (opens another site)",
      "result.image_blocked": "Pictures from other sites are not shown on this page.",
      "result.wikipedia": "From Wikipedia",
      "result.wikipedia_other": "From Wikipedia ({lang})",
      "result.read_more": "Read more on Wikipedia",
      "result.model": "Model {name} {version}",
      "warn.title": "Warning",
      "warn.severity": "Severity: {severity}",
      "warn.items": "Concerns: {names}",
      "warn.possible": "Possible warning",
      "warn.items_possible": "If these are {names} (the model is not sure of every one)",
      "severity.contraindicated": "must not be combined",
      "severity.danger": "danger",
      "severity.warning": "warning",
      "severity.caution": "caution",
      "severity.info": "for information",
      "wrong.button": "Wrong?",
      "wrong.title": "What is it really?",
      "wrong.search": "Search the classes",
      "wrong.not_listed": "It is not in the list",
      "wrong.text": "What is it? (optional)",
      "wrong.send": "Send",
      "wrong.cancel": "Cancel",
      "wrong.thanks": "Thank you: your answer was sent.",
      "wrong.pick": "Choose a class, or tick “not in the list”.",
      "wrong.none": "No class matches.",
      "error.generic": "Something went wrong: {why}",
      "error.network": "The server could not be reached.",
      "footer.runs": "Training runs",
      "footer.api": "API",
      "phonepage.title": "Send a photo to your computer",
      "phonepage.take": "Take a photo",
      "phonepage.choose": "Choose a photo",
      "phonepage.sending": "Sending…",
      "phonepage.sent": "Sent. Look at your computer: {name}",
      "phonepage.sent_unknown": "Sent. Look at your computer.",
      "phonepage.remaining": "This code takes {n} more photo(s).",
      "phonepage.expired": "This code has expired. Make a new one on the computer.",
      "phonepage.used": "This code was for one photo and has been used. Make a new one on the computer.",
      "phonepage.full": "This code has received all its photos. Make a new one on the computer.",
      "phonepage.invalid": "This link is not valid. Scan the QR code again.",
    },
    ko: {
      "title": "이것은 무엇일까요?",
      "subtitle": "사진을 1~5장 주시면 모델이 무엇이 찍혔는지 알려 드립니다.",
      "lang.label": "언어",
      "give.title": "사진",
      "give.drop": "여기에 사진을 끌어다 놓으세요",
      "give.or": "또는",
      "give.pick": "사진 선택",
      "give.hint": "사진 1~5장. 보내기 전에 브라우저에서 크기를 줄입니다.",
      "give.each": "서로 다른 물건 (사진마다 한 물건; 함께 쓰면 안 되는 조합이면 경고)",
      "give.consent": "모델 개선을 위해 사진 보관에 동의합니다 (선택)",
      "give.consent_review": "동의하시면, 모델이 확신하지 못한 사진은 모델을 가르치기 위해 사람이 검토할 수 있습니다.",
      "give.subset": "다음 중에서만",
      "give.subset_all": "모든 항목",
      "give.why": "왜? 모델이 사진의 어디를 보았는지 표시",
      "give.too_many": "처음 {n}장만 사용합니다.",
      "give.not_kept": "서버의 사진 저장 공간이 가득 차서 사진을 보관하지 않았습니다.",
      "give.not_image": "{name}은(는) 사진이 아니어서 제외했습니다.",
      "camera.open": "카메라 사용",
      "camera.shot": "촬영",
      "camera.close": "카메라 닫기",
      "camera.video": "카메라 미리보기",
      "camera.denied": "카메라를 쓸 수 없습니다 ({why}). 아래 버튼이나 사진 선택을 이용하세요.",
      "camera.fallback": "사진 찍기",
      "phone.open": "내 휴대폰 사용 (QR 코드)",
      "phone.close": "중지",
      "phone.hint": "휴대폰으로 이 코드를 스캔해 사진을 찍으면 결과가 여기에 나옵니다.",
      "phone.qr": "휴대폰 업로드 페이지의 QR 코드",
      "phone.waiting": "휴대폰에서 사진을 기다리는 중…",
      "phone.received": "휴대폰에서 사진 {n}장을 받았습니다.",
      "phone.expired": "QR 코드가 만료되었습니다.",
      "phone.again": "새 QR 코드",
      "phone.failed": "휴대폰 연결을 시작할 수 없습니다: {why}",
      "phone.polling": "실시간 연결이 안 되어 몇 초마다 확인합니다.",
      "loading": "식별하는 중…",
      "result.title": "결과",
      "result.photo": "사진 {n}",
      "result.object": "물체 {n}",
      "result.detections": "사진에서 찾은 물체",
      "result.boxes_alt": "물체 {n}개를 표시한 사진",
      "result.fallback": "사진에서 물체를 찾지 못해 사진 전체로 식별했습니다.",
      "result.unknown": "잘 모르겠습니다",
      "result.unknown_hint": "모델이 확신하지 못합니다. 모델이 모르는 물건일 수 있습니다. 가장 가까운 후보:",
      "result.guesses": "점수",
      "result.why": "모델이 {name}(으)로 판단한 근거 위치: 밝을수록 강한 근거",
      "result.references": "내 사진과 가장 비슷한 {name} 학습 사진",
      "result.reference": "{name} 학습 사진 (유사도 {pct})",
      "result.score": "{name}: {pct}",
      "result.card": "{name} 정보",
      "result.scientific": "학명",
      "result.taxonomy": "분류",
      "rank.species": "종", "rank.genus": "속", "rank.family": "과", "rank.order": "목",
      "result.fields": "상세 정보",
      "result.links": "링크",
      "result.image_link": "사진 (다른 사이트로 이동)",
      "result.image_blocked": "다른 사이트의 사진은 이 페이지에 표시하지 않습니다.",
      "result.wikipedia": "위키백과",
      "result.wikipedia_other": "위키백과 ({lang})",
      "result.read_more": "위키백과에서 더 보기",
      "result.model": "모델 {name} {version}",
      "warn.title": "경고",
      "warn.severity": "심각도: {severity}",
      "warn.items": "해당: {names}",
      "warn.possible": "주의 가능성",
      "warn.items_possible": "{names}(이)라면 (모델이 모두 확신하지는 못함)",
      "severity.contraindicated": "병용 금기",
      "severity.danger": "위험",
      "severity.warning": "경고",
      "severity.caution": "주의",
      "severity.info": "참고",
      "wrong.button": "틀렸나요?",
      "wrong.title": "실제로는 무엇인가요?",
      "wrong.search": "클래스 검색",
      "wrong.not_listed": "목록에 없습니다",
      "wrong.text": "무엇인가요? (선택)",
      "wrong.send": "보내기",
      "wrong.cancel": "취소",
      "wrong.thanks": "감사합니다. 답변을 보냈습니다.",
      "wrong.pick": "클래스를 고르거나 ‘목록에 없습니다’를 선택하세요.",
      "wrong.none": "맞는 클래스가 없습니다.",
      "error.generic": "문제가 생겼습니다: {why}",
      "error.network": "서버에 연결할 수 없습니다.",
      "footer.runs": "학습 기록",
      "footer.api": "API",
      "phonepage.title": "컴퓨터로 사진 보내기",
      "phonepage.take": "사진 찍기",
      "phonepage.choose": "사진 고르기",
      "phonepage.sending": "보내는 중…",
      "phonepage.sent": "보냈습니다. 컴퓨터 화면을 보세요: {name}",
      "phonepage.sent_unknown": "보냈습니다. 컴퓨터 화면을 보세요.",
      "phonepage.remaining": "이 코드로 {n}장 더 보낼 수 있습니다.",
      "phonepage.expired": "이 코드는 만료되었습니다. 컴퓨터에서 새 코드를 만드세요.",
      "phonepage.used": "이 코드는 사진 한 장용이며 이미 사용되었습니다. 컴퓨터에서 새 코드를 만드세요.",
      "phonepage.full": "이 코드로 받을 수 있는 사진을 모두 받았습니다. 컴퓨터에서 새 코드를 만드세요.",
      "phonepage.invalid": "올바른 링크가 아닙니다. QR 코드를 다시 스캔하세요.",
    },
  };
  const SUPPORTED = Object.keys(STRINGS);
  const STORE_KEY = "snapid.lang";
  let current = "en";

  function initial() {
    let saved = null;
    try { saved = localStorage.getItem(STORE_KEY); } catch (e) { /* storage may be disabled */ }
    if (SUPPORTED.includes(saved)) return saved;
    for (const tag of navigator.languages || [navigator.language || "en"]) {
      const base = String(tag).toLowerCase().split("-")[0];
      if (SUPPORTED.includes(base)) return base;
    }
    return "en";
  }

  function t(key, vars) {
    const table = STRINGS[current] || STRINGS.en;
    const text = key in table ? table[key] : (STRINGS.en[key] || key);
    return text.replace(/\{(\w+)\}/g, (m, name) => (vars && name in vars ? String(vars[name]) : m));
  }

  function apply(root) {
    const scope = root || document;
    for (const el of scope.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const el of scope.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
    for (const el of scope.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
    for (const el of scope.querySelectorAll("[data-i18n-alt]")) el.alt = t(el.dataset.i18nAlt);
    document.documentElement.lang = current;
    const title = document.querySelector("[data-i18n-title]");
    if (title) document.title = t(title.dataset.i18nTitle) + " · snapid";
  }

  function set(lang) {
    current = SUPPORTED.includes(lang) ? lang : "en";
    try { localStorage.setItem(STORE_KEY, current); } catch (e) { /* not persisted */ }
    apply();
    document.dispatchEvent(new CustomEvent("snapid:lang", { detail: current }));
  }

  current = initial();
  window.SnapidI18n = { t, apply, set, get lang() { return current; }, languages: SUPPORTED };
})();
