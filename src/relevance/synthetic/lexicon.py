"""Hand-written vocabulary for the synthetic demo data: category paths in the competition's style and the
product word in each of the 13 competition languages. Written for this project; it describes no real data."""

LANGUAGE_ORDER = ("en", "es", "fr", "ja", "ko", "pt", "th", "ar", "de", "it", "pl", "id", "vn")

# Leaf category path | title noun | unit words for titles | product word per language in LANGUAGE_ORDER.
# Paths are lowercase English, levels joined by a bare comma; some level names contain ", ".
_CONCEPTS = """
apparel accessories,hats & caps,baseball caps|Baseball Cap|adjustable,cotton,snapback|baseball cap|gorra|casquette|野球帽|야구모자|boné|หมวกแก๊ป|قبعة بيسبول|Baseballkappe|cappellino da baseball|czapka z daszkiem|topi baseball|mũ lưỡi trai
apparel accessories,hats & caps,beanies|Knitted Beanie|wool,warm,winter|beanie|gorro de punto|bonnet|ニット帽|비니|gorro|หมวกไหมพรม|قبعة صوفية|Mütze|berretto di lana|czapka zimowa|kupluk|mũ len
apparel accessories,hats & caps,sun hats|Sun Hat|wide brim,straw,uv protection|sun hat|sombrero de sol|chapeau de soleil|麦わら帽子|햇빛 모자|chapéu de sol|หมวกกันแดด|قبعة شمس|Sonnenhut|cappello da sole|kapelusz przeciwsłoneczny|topi pantai|mũ chống nắng
shoes,sports shoes,running shoes|Running Shoes|breathable,lightweight,size 42|running shoes|zapatillas para correr|chaussures de course|ランニングシューズ|러닝화|tênis de corrida|รองเท้าวิ่ง|حذاء جري|Laufschuhe|scarpe da corsa|buty do biegania|sepatu lari|giày chạy bộ
shoes,sports shoes,basketball shoes|Basketball Shoes|high top,cushioned,size 44|basketball shoes|zapatillas de baloncesto|chaussures de basket|バスケットシューズ|농구화|tênis de basquete|รองเท้าบาสเกตบอล|حذاء كرة السلة|Basketballschuhe|scarpe da basket|buty do koszykówki|sepatu basket|giày bóng rổ
shoes,women's shoes,high heels|High Heels Pumps|pointed toe,8cm,size 37|high heels|tacones altos|talons hauts|ハイヒール|하이힐|salto alto|รองเท้าส้นสูง|كعب عالي|High Heels|tacchi alti|szpilki|sepatu hak tinggi|giày cao gót
women's clothing,sleepwear & loungewear,pajama sets|Satin Pajamas Set|2pcs,silk,long sleeve|pajamas|pijama|pyjama|パジャマ|잠옷|pijama|ชุดนอน|بيجامة|Schlafanzug|pigiama|piżama|piyama|đồ ngủ
women's clothing,sleepwear & loungewear,robes|Bathrobe|cotton,towel,unisex|bathrobe|bata|peignoir|バスローブ|목욕가운|roupão|เสื้อคลุมอาบน้ำ|روب حمام|Bademantel|accappatoio|szlafrok|jubah mandi|áo choàng tắm
women's clothing,dresses,summer dresses|Summer Dress|floral,a-line,midi|summer dress|vestido de verano|robe d'été|ワンピース|원피스|vestido de verão|ชุดเดรส|فستان صيفي|Sommerkleid|vestito estivo|sukienka letnia|gaun musim panas|váy mùa hè
consumer electronics,camera & photo,camera lenses|Telephoto Lens|60x,hd,clip-on|telephoto lens|lente telefoto|objectif téléobjectif|望遠レンズ|망원 렌즈|lente teleobjetiva|เลนส์เทเล|عدسة تقريب|Teleobjektiv|obiettivo teleobiettivo|obiektyw tele|lensa telefoto|ống kính tele
consumer electronics,camera & photo,tripods|Camera Tripod|aluminium,160cm,bluetooth remote|tripod|trípode|trépied|三脚|삼각대|tripé|ขาตั้งกล้อง|حامل ثلاثي|Stativ|treppiede|statyw|tripod|chân máy
consumer electronics,earphones & headphones,wireless earbuds|Wireless Earbuds|bluetooth 5.3,tws,noise cancelling|wireless earbuds|auriculares inalámbricos|écouteurs sans fil|ワイヤレスイヤホン|무선 이어폰|fone sem fio|หูฟังไร้สาย|سماعات لاسلكية|kabellose Ohrhörer|auricolari wireless|słuchawki bezprzewodowe|earbud nirkabel|tai nghe không dây
consumer electronics,earphones & headphones,over-ear headphones|Over-Ear Headphones|foldable,hifi,40mm driver|headphones|cascos|casque audio|ヘッドホン|헤드폰|headphone|หูฟังครอบหู|سماعات رأس|Kopfhörer|cuffie|słuchawki nauszne|headset|tai nghe chụp tai
phones & telecommunications,mobile phone accessories,phone cases|Phone Case|shockproof,silicone,for iphone 15|phone case|funda de móvil|coque de téléphone|スマホケース|폰케이스|capinha de celular|เคสโทรศัพท์|جراب هاتف|Handyhülle|custodia telefono|etui na telefon|casing hp|ốp lưng điện thoại
phones & telecommunications,mobile phone accessories,chargers|Fast Charger|65w,usb-c,gan|charger|cargador|chargeur|充電器|충전기|carregador|ที่ชาร์จ|شاحن|Ladegerät|caricabatterie|ładowarka|charger|sạc điện thoại
phones & telecommunications,mobile phone accessories,screen protectors|Tempered Glass Screen Protector|9h,anti-glare,2 pack|screen protector|protector de pantalla|protection écran|保護フィルム|액정 보호 필름|película protetora|ฟิล์มกันรอย|واقي شاشة|Displayschutz|pellicola protettiva|szkło ochronne|pelindung layar|kính cường lực
home & garden,kitchen, dining & bar,cookware,frying pans|Non-Stick Frying Pan|28cm,induction,granite|frying pan|sartén|poêle|フライパン|프라이팬|frigideira|กระทะ|مقلاة|Bratpfanne|padella|patelnia|wajan|chảo chiên
home & garden,kitchen, dining & bar,cookware,pots|Stainless Steel Cooking Pot|5l,with lid,induction|cooking pot|olla|casserole|鍋|냄비|panela|หม้อ|قدر طبخ|Kochtopf|pentola|garnek|panci|nồi nấu
home & garden,kitchen, dining & bar,drinkware,water bottles|Water Bottle|1l,bpa free,leakproof|water bottle|botella de agua|gourde|水筒|물병|garrafa de água|ขวดน้ำ|زجاجة ماء|Trinkflasche|borraccia|butelka na wodę|botol minum|bình nước
food,grocery,flour, baking and cooking,decorations|Cake Decorating Sprinkles|edible,rainbow,100g|cake decorations|decoraciones para tartas|décorations de gâteau|ケーキデコレーション|케이크 장식|confeitos|ของตกแต่งเค้ก|زينة الكيك|Tortendeko|decorazioni per torte|posypka do ciast|hiasan kue|đồ trang trí bánh
food,grocery,flour, baking and cooking,flour|Wheat Flour|1kg,all purpose,organic|flour|harina|farine|小麦粉|밀가루|farinha|แป้ง|دقيق|Mehl|farina|mąka|tepung terigu|bột mì
food,grocery,coffee, tea and cocoa,coffee beans|Roasted Coffee Beans|arabica,500g,dark roast|coffee beans|café en grano|café en grains|コーヒー豆|원두|café em grãos|เมล็ดกาแฟ|حبوب القهوة|Kaffeebohnen|caffè in grani|kawa ziarnista|biji kopi|hạt cà phê
food,grocery,coffee, tea and cocoa,green tea|Green Tea|matcha,100 bags,loose leaf|green tea|té verde|thé vert|緑茶|녹차|chá verde|ชาเขียว|شاي أخضر|grüner Tee|tè verde|zielona herbata|teh hijau|trà xanh
sports & entertainment,fitness & body building,yoga mats|Yoga Mat|6mm,non-slip,tpe|yoga mat|esterilla de yoga|tapis de yoga|ヨガマット|요가매트|tapete de yoga|เสื่อโยคะ|سجادة يوغا|Yogamatte|tappetino yoga|mata do jogi|matras yoga|thảm yoga
sports & entertainment,fitness & body building,dumbbells|Adjustable Dumbbells|2x10kg,neoprene,home gym|dumbbells|mancuernas|haltères|ダンベル|덤벨|halteres|ดัมเบล|دمبل|Hanteln|manubri|hantle|dumbel|tạ tay
sports & entertainment,team sports,soccer balls|Soccer Ball|size 5,pu leather,training|soccer ball|balón de fútbol|ballon de foot|サッカーボール|축구공|bola de futebol|ลูกฟุตบอล|كرة قدم|Fußball|pallone da calcio|piłka nożna|bola sepak|quả bóng đá
beauty & health,makeup,lipstick|Matte Lipstick|long lasting,waterproof,velvet|lipstick|pintalabios|rouge à lèvres|口紅|립스틱|batom|ลิปสติก|أحمر شفاه|Lippenstift|rossetto|szminka|lipstik|son môi
beauty & health,skin care,sunscreen|Sunscreen Cream|spf 50,50ml,water resistant|sunscreen|protector solar|crème solaire|日焼け止め|선크림|protetor solar|ครีมกันแดด|واقي شمس|Sonnencreme|crema solare|krem z filtrem|tabir surya|kem chống nắng
beauty & health,hair care, styling & tools,hair dryers|Ionic Hair Dryer|2000w,diffuser,foldable|hair dryer|secador de pelo|sèche-cheveux|ドライヤー|헤어드라이어|secador de cabelo|ไดร์เป่าผม|مجفف شعر|Haartrockner|asciugacapelli|suszarka do włosów|pengering rambut|máy sấy tóc
automobiles & motorcycles,car electronics,dash cams|Dash Cam|1080p,night vision,wide angle|dash cam|cámara para coche|caméra embarquée|ドライブレコーダー|블랙박스|câmera veicular|กล้องติดรถยนต์|كاميرا سيارة|Dashcam|telecamera per auto|kamera samochodowa|kamera mobil|camera hành trình
automobiles & motorcycles,auto replacement parts,motor oil|Synthetic Motor Oil|5w-40,4l,fully synthetic|motor oil|aceite de motor|huile moteur|エンジンオイル|엔진오일|óleo de motor|น้ำมันเครื่อง|زيت محرك|Motoröl|olio motore|olej silnikowy|oli mesin|dầu nhớt
toys & hobbies,building blocks,building sets|Building Blocks Set|1000 pcs,compatible,city|building blocks|bloques de construcción|jeu de construction|ブロック玩具|블록 장난감|blocos de montar|ตัวต่อ|مكعبات بناء|Bausteine|mattoncini|klocki|balok susun|đồ chơi lắp ráp
mother & kids,baby care,diapers|Baby Diapers|size 3,ultra thin,60 pcs|diapers|pañales|couches|おむつ|기저귀|fraldas|ผ้าอ้อม|حفاضات|Windeln|pannolini|pieluchy|popok|tã em bé
"""

BRANDS = (
    "Apexel",
    "Xiaomi",
    "Anker",
    "Baseus",
    "Ugreen",
    "Nike",
    "Adidas",
    "Tefal",
    "Lego",
    "Philips",
    "Maybelline",
    "Nivea",
    "Castrol",
    "Pampers",
    "Lavazza",
    "Dove",
    "Sony",
    "Joby",
    "Ulanzi",
    "Decathlon",
)
COLORS = ("black", "white", "red", "blue", "pink", "green", "grey", "beige")


def concepts() -> list[dict]:
    """Each leaf concept: its category path, English title noun, title attributes and word per language."""
    parsed = []
    for line in _CONCEPTS.strip().splitlines():
        path, noun, attributes, *words = line.split("|")
        assert len(words) == len(LANGUAGE_ORDER), f"lexicon row for {path!r} has {len(words)} languages"
        parsed.append(
            {"path": path, "noun": noun, "attributes": attributes.split(","), "words": dict(zip(LANGUAGE_ORDER, words))}
        )
    return parsed
