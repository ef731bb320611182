"""Word lists the demo data is drawn from: names with readings, company name parts, places.

Japanese entries carry (written form, hiragana reading, romanisation); the romanisation
builds email addresses and domains. Company name parts carry the industry they suggest.
"""

from __future__ import annotations

from typing import NamedTuple


class JapaneseName(NamedTuple):
    written: str
    reading: str
    romaji: str


class Place(NamedTuple):
    """A city or ward with its region, postal prefix, phone area code and streets."""

    city: str
    region: str
    country: str
    postal: str
    area_code: str
    streets: tuple[str, ...]


class NamePart(NamedTuple):
    written: str
    romaji: str
    industry: str


def _words(text: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(word.strip() for word in text.split(sep) if word.strip())


def _jp(rows: str) -> tuple[JapaneseName, ...]:
    return tuple(JapaneseName(*row.split()) for row in rows.strip().splitlines())


JP_FAMILY_NAMES = _jp(
    """
佐藤 さとう sato
鈴木 すずき suzuki
高橋 たかはし takahashi
田中 たなか tanaka
伊藤 いとう ito
渡辺 わたなべ watanabe
山本 やまもと yamamoto
中村 なかむら nakamura
小林 こばやし kobayashi
加藤 かとう kato
吉田 よしだ yoshida
山田 やまだ yamada
佐々木 ささき sasaki
山口 やまぐち yamaguchi
松本 まつもと matsumoto
井上 いのうえ inoue
木村 きむら kimura
林 はやし hayashi
斎藤 さいとう saito
清水 しみず shimizu
山崎 やまざき yamazaki
森 もり mori
池田 いけだ ikeda
橋本 はしもと hashimoto
阿部 あべ abe
石川 いしかわ ishikawa
山下 やました yamashita
中島 なかじま nakajima
石井 いしい ishii
小川 おがわ ogawa
前田 まえだ maeda
岡田 おかだ okada
長谷川 はせがわ hasegawa
藤田 ふじた fujita
後藤 ごとう goto
近藤 こんどう kondo
村上 むらかみ murakami
遠藤 えんどう endo
青木 あおき aoki
坂本 さかもと sakamoto
福田 ふくだ fukuda
太田 おおた ota
西村 にしむら nishimura
藤井 ふじい fujii
金子 かねこ kaneko
岡本 おかもと okamoto
藤原 ふじわら fujiwara
中野 なかの nakano
三浦 みうら miura
原田 はらだ harada
中川 なかがわ nakagawa
松田 まつだ matsuda
竹内 たけうち takeuchi
小野 おの ono
田村 たむら tamura
中山 なかやま nakayama
和田 わだ wada
石田 いしだ ishida
森田 もりた morita
上田 うえだ ueda
内田 うちだ uchida
柴田 しばた shibata
酒井 さかい sakai
工藤 くどう kudo
横山 よこやま yokoyama
宮崎 みやざき miyazaki
宮本 みやもと miyamoto
高木 たかぎ takagi
安藤 あんどう ando
谷口 たにぐち taniguchi
丸山 まるやま maruyama
今井 いまい imai
高田 たかだ takada
藤本 ふじもと fujimoto
武田 たけだ takeda
村田 むらた murata
上野 うえの ueno
杉山 すぎやま sugiyama
増田 ますだ masuda
小山 こやま koyama
大塚 おおつか otsuka
平野 ひらの hirano
菅原 すがわら sugawara
久保 くぼ kubo
松井 まつい matsui
千葉 ちば chiba
岩崎 いわさき iwasaki
桜井 さくらい sakurai
木下 きのした kinoshita
野口 のぐち noguchi
松尾 まつお matsuo
菊地 きくち kikuchi
野村 のむら nomura
新井 あらい arai
"""
)

JP_GIVEN_NAMES = _jp(
    """
太郎 たろう taro
翔太 しょうた shota
大輔 だいすけ daisuke
健太 けんた kenta
拓也 たくや takuya
直樹 なおき naoki
誠 まこと makoto
浩 ひろし hiroshi
隆 たかし takashi
健一 けんいち kenichi
和也 かずや kazuya
亮 りょう ryo
蓮 れん ren
悠真 ゆうま yuma
陽翔 はると haruto
湊 みなと minato
達也 たつや tatsuya
雄一 ゆういち yuichi
修 おさむ osamu
聡 さとし satoshi
学 まなぶ manabu
剛 つよし tsuyoshi
正樹 まさき masaki
俊介 しゅんすけ shunsuke
康介 こうすけ kosuke
裕太 ゆうた yuta
一郎 いちろう ichiro
慎也 しんや shinya
花子 はなこ hanako
陽子 ようこ yoko
美穂 みほ miho
由美 ゆみ yumi
恵子 けいこ keiko
愛 あい ai
彩 あや aya
真由美 まゆみ mayumi
明美 あけみ akemi
直美 なおみ naomi
智子 ともこ tomoko
裕子 ゆうこ yuko
久美子 くみこ kumiko
美咲 みさき misaki
さくら さくら sakura
葵 あおい aoi
結衣 ゆい yui
陽菜 ひな hina
凛 りん rin
芽依 めい mei
美紀 みき miki
麻衣 まい mai
千尋 ちひろ chihiro
奈々 なな nana
沙織 さおり saori
香織 かおり kaori
理恵 りえ rie
友美 ともみ tomomi
綾香 あやか ayaka
"""
)

EN_GIVEN_NAMES = _words(
    """James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara
    Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Nancy Daniel Lisa Matthew
    Emily Anthony Ashley Mark Michelle Steven Amanda Andrew Melissa Kevin Rachel Brian Laura Ryan
    Olivia Ethan Sophia Noah Emma Liam Ava Lucas Chloe Priya Wei Carlos Fatima Diego Mei"""
)

EN_FAMILY_NAMES = _words(
    """Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez
    Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Thompson White Harris Clark Lewis
    Robinson Walker Young Allen King Wright Scott Hill Green Adams Baker Nelson Carter Mitchell
    Roberts Turner Phillips Campbell Parker Evans Edwards Collins Stewart Morris Murphy Cook Rogers
    Morgan Cooper Peterson Reed Bailey Kelly Howard Ward Patel Chen Nguyen Kim Singh O'Brien"""
)

#: The leading word of a Japanese company name.
JP_COMPANY_STEMS = tuple(
    (row.split()[0], row.split()[1])
    for row in """
サクラ sakura
富士 fuji
東邦 toho
大和 yamato
みどり midori
北斗 hokuto
青葉 aoba
朝日 asahi
光 hikari
菱和 ryowa
三和 sanwa
東洋 toyo
中央 chuo
若葉 wakaba
白鳥 shiratori
銀河 ginga
昭和 showa
平和 heiwa
協和 kyowa
共栄 kyoei
新星 shinsei
大東 daito
東亜 toa
太陽 taiyo
明星 myojo
信和 shinwa
松風 matsukaze
紅葉 momiji
双葉 futaba
常盤 tokiwa
千代田 chiyoda
飛鳥 asuka
北辰 hokushin
南海 nankai
中部 chubu
関西 kansai
九州 kyushu
北海 hokkai
日進 nisshin
隼 hayabusa
未来 mirai
匠 takumi
彩 irodori
蒼 ao
凪 nagi
結 yui
縁 enishi
アルファ alpha
ネクスト next
スマート smart
グローバル global
クラウド cloud
フューチャー future
リンク link
ブライト bright
エース ace
ユニバース universe
ミライズ miraiz
トラスト trust
""".strip().splitlines()
)

JP_COMPANY_WORDS = tuple(
    NamePart(*row.replace("_", " ").split(" ", 2))
    for row in """
精工 seiko Manufacturing
電機 denki Electronics
商事 shoji Wholesale
物産 bussan Trading
化学 kagaku Chemicals
製薬 seiyaku Pharmaceuticals
建設 kensetsu Construction
システムズ systems Software
ソリューションズ solutions IT_Services
テクノロジー tech Software
食品 foods Food_&_Beverage
運輸 unyu Logistics
不動産 fudosan Real_Estate
工業 kogyo Manufacturing
製作所 seisakusho Manufacturing
ホールディングス hd Holding_Company
産業 sangyo Manufacturing
印刷 insatsu Printing
鉄工 tekko Metals
電子 denshi Electronics
情報サービス joho IT_Services
ロジスティクス logistics Logistics
設計 sekkei Architecture
物流 butsuryu Logistics
商会 shokai Wholesale
製菓 seika Food_&_Beverage
酒造 shuzo Food_&_Beverage
繊維 seni Textiles
自動車 jidosha Automotive
メディカル medical Healthcare
ヘルスケア healthcare Healthcare
コンサルティング consulting Consulting
デジタル digital Marketing_Services
メディア media Media
ネットワークス networks Telecommunications
エンジニアリング engineering Engineering
観光 kanko Travel_&_Hospitality
保険サービス hoken Insurance
教育 kyoiku Education
""".strip().splitlines()
)

EN_COMPANY_STEMS = _words(
    """Northwind|Blue Harbor|Summit|Pinecrest|Redwood|Silverline|Brightpath|Ironbridge
    |Clearwater|Lakeside|Evergreen|Oakridge|Horizon|Maple|Riverstone|Stonebridge|Westfield
    |Bluebird|Cedar|Falcon|Keystone|Lighthouse|Meridian|Nimbus|Orion|Pioneer|Quantum|Sterling
    |Trident|Vantage|Willow|Zenith|Apex|Beacon|Cascade|Crescent|Granite|Aurora|Copperleaf
    |Fairview|Highland|Juniper|Kestrel|Lumen|Northstar|Pacific Crest|Sequoia|Tidewater
    |Union Square|Wildflower""",
    "|",
)

EN_COMPANY_WORDS = tuple(
    NamePart(*row.replace("_", " ").split(" ", 2))
    for row in """
Analytics analytics Software
Logistics logistics Logistics
Foods foods Food_&_Beverage
Software software Software
Health health Healthcare
Energy energy Energy
Capital capital Financial_Services
Labs labs Software
Systems systems IT_Services
Robotics robotics Manufacturing
Media media Media
Manufacturing mfg Manufacturing
Consulting consulting Consulting
Biotech bio Pharmaceuticals
Networks networks Telecommunications
Retail retail Retail
Design design Marketing_Services
Security security Software
Cloud cloud IT_Services
Motors motors Automotive
Partners partners Consulting
Outfitters outfitters Retail
Hospitality hospitality Travel_&_Hospitality
Learning learning Education
""".strip().splitlines()
)

EN_LEGAL_FORMS = ("Inc.", "LLC", "Corp.", "Inc.", "Co.", "Ltd.")

JP_PLACES = (
    Place("千代田区", "東京都", "JP", "100", "03", ("丸の内", "大手町", "有楽町", "神田錦町")),
    Place("港区", "東京都", "JP", "105", "03", ("芝公園", "虎ノ門", "六本木", "港南")),
    Place("中央区", "東京都", "JP", "104", "03", ("銀座", "日本橋", "八重洲", "京橋")),
    Place("新宿区", "東京都", "JP", "160", "03", ("西新宿", "新宿", "四谷", "高田馬場")),
    Place("渋谷区", "東京都", "JP", "150", "03", ("渋谷", "道玄坂", "恵比寿", "神宮前")),
    Place("品川区", "東京都", "JP", "141", "03", ("大崎", "五反田", "東品川")),
    Place("大阪市北区", "大阪府", "JP", "530", "06", ("梅田", "中之島", "堂島")),
    Place("大阪市中央区", "大阪府", "JP", "541", "06", ("本町", "北浜", "心斎橋筋")),
    Place("名古屋市中区", "愛知県", "JP", "460", "052", ("栄", "錦", "丸の内")),
    Place("横浜市西区", "神奈川県", "JP", "220", "045", ("みなとみらい", "高島", "北幸")),
    Place("福岡市博多区", "福岡県", "JP", "812", "092", ("博多駅前", "祇園町", "中洲")),
    Place("札幌市中央区", "北海道", "JP", "060", "011", ("北一条西", "大通西", "南一条西")),
    Place("仙台市青葉区", "宮城県", "JP", "980", "022", ("一番町", "中央", "本町")),
    Place("広島市中区", "広島県", "JP", "730", "082", ("紙屋町", "八丁堀", "大手町")),
    Place("京都市下京区", "京都府", "JP", "600", "075", ("四条通", "烏丸通", "東塩小路町")),
    Place("神戸市中央区", "兵庫県", "JP", "650", "078", ("三宮町", "元町通", "港島")),
    Place("さいたま市大宮区", "埼玉県", "JP", "330", "048", ("桜木町", "大門町", "宮町")),
    Place("浜松市中央区", "静岡県", "JP", "430", "053", ("砂山町", "鍛冶町", "板屋町")),
)

#: Weights of the Japanese places above: Tokyo wards dominate, as they do in B2B.
JP_PLACE_WEIGHTS = (14, 12, 10, 9, 9, 6, 8, 6, 6, 5, 4, 3, 3, 2, 2, 2, 2, 1)

US_PLACES = (
    Place("San Francisco", "CA", "US", "941", "415", ("Market St", "Mission St", "Howard St")),
    Place("New York", "NY", "US", "100", "212", ("Broadway", "5th Ave", "Madison Ave")),
    Place("Seattle", "WA", "US", "981", "206", ("Pine St", "2nd Ave", "Westlake Ave")),
    Place("Austin", "TX", "US", "787", "512", ("Congress Ave", "Lamar Blvd", "6th St")),
    Place("Boston", "MA", "US", "021", "617", ("Boylston St", "Summer St", "State St")),
    Place("Chicago", "IL", "US", "606", "312", ("Wacker Dr", "Michigan Ave", "LaSalle St")),
    Place("Los Angeles", "CA", "US", "900", "213", ("Wilshire Blvd", "Figueroa St", "Olive St")),
    Place("Denver", "CO", "US", "802", "303", ("Larimer St", "Blake St", "17th St")),
)

JP_BUILDINGS = ("ビル", "タワー", "センタービル", "スクエア", "第一ビル", "フロント")

JP_TITLES = (
    "代表取締役社長",
    "取締役",
    "執行役員",
    "営業部 部長",
    "営業部 課長",
    "営業部",
    "購買部 部長",
    "購買部 担当",
    "情報システム部 部長",
    "情報システム部 課長",
    "情報システム部",
    "経営企画部 マネージャー",
    "マーケティング部 マネージャー",
    "マーケティング部",
    "総務部 課長",
    "人事部 部長",
    "経理部 課長",
    "製造部 係長",
    "品質保証部 主任",
    "開発部 エンジニア",
    "DX推進室 室長",
    "カスタマーサクセス",
)

EN_TITLES = (
    "CEO",
    "CTO",
    "CFO",
    "VP of Sales",
    "VP of Engineering",
    "Head of Marketing",
    "Marketing Manager",
    "Procurement Manager",
    "IT Director",
    "IT Manager",
    "Operations Manager",
    "Software Engineer",
    "Product Manager",
    "Account Executive",
    "Finance Manager",
    "HR Business Partner",
    "Customer Success Lead",
    "Data Analyst",
)

FREE_MAIL_JP = ("gmail.com", "yahoo.co.jp", "icloud.com", "outlook.jp", "docomo.ne.jp")
FREE_MAIL_EN = ("gmail.com", "outlook.com", "yahoo.com", "icloud.com", "proton.me")

CONTACT_TAGS = (
    "展示会2026",
    "Japan IT Week",
    "webinar",
    "decision-maker",
    "champion",
    "newsletter",
    "partner",
    "vip",
    "セミナー参加",
)

SOURCES = (
    "website",
    "trade-show",
    "webinar",
    "referral",
    "outbound",
    "partner",
    "paid-search",
    "import",
)
