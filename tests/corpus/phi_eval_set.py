"""PHI evaluation set: clinical sentences with planted, fictitious identifiers, plus clean look-alikes.

    python tests/corpus/phi_eval_set.py          # rewrites tests/corpus/data/phi_eval.jsonl

Seven styles of Chinese clinical text (admission notes, discharge summaries, outpatient records,
nursing notes, referral letters, prescriptions, doctor-patient chat).  Each template fills its
slots from pools; identifier slots record their surface string, span and type (``email``,
``id_card``, ``birth_date``, ``record_number``, ``bed_number``, ``phone``, ``address``,
``name``).  Clean templates carry no identifier and are dense with look-alikes: drugs, herbs,
diseases, eponyms, organisms, doses, lab values, test dates, department and hospital names,
literature citations and numbers that identify nobody.

The set is split by style: discharge summaries, referral letters and chat are ``heldout``, the
other four styles ``tune``.  The look-alike pools are split as well (alternate entries), so a
word a recogniser was tuned to leave alone does not reappear in the held-out half.  Standard
library only, fixed seed: the same run always writes the same file.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "phi_eval.jsonl"
SEED = 20240611
PER_TEMPLATE = 10
HELDOUT_STYLES = ("discharge", "referral", "chat")

SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
) + ["欧阳", "司马", "诸葛", "上官", "东方"]
GIVEN = list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华建国文红玉梅志飞鹏辉海波宁燕云凤春晓婷雪琳欣怡子涵浩宇俊峰淑珍德胜永福秋菊金凤")
RELATIVES = ["儿子", "女儿", "配偶", "丈夫", "妻子", "母亲", "父亲", "孙女", "侄子"]
REGIONS = ["110101", "110108", "310104", "310115", "330106", "440305", "510107", "420111", "320102", "370202", "410105", "610113", "210102", "430104", "350203", "500103", "340104", "130102"]
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
MOBILE_PREFIXES = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "153", "155", "156", "157", "158", "159", "166", "173", "177", "180", "181", "182", "185", "186", "187", "188", "189", "198", "199"]
AREA_CODES = ["010", "021", "022", "023", "020", "0571", "0755", "025", "027", "028", "029", "0531", "0532", "0371", "0731", "0591", "0592", "024", "0551"]
EMAIL_DOMAINS = ["163.com", "126.com", "qq.com", "sina.com", "hotmail.com", "gmail.com", "yeah.net", "hosp-demo.org.cn", "foxmail.com", "139.com"]
PINYIN = ["zhang", "li", "wang", "liu", "chen", "yang", "zhao", "huang", "zhou", "wu", "xu", "sun", "hu", "zhu", "gao", "lin", "he", "guo", "ma", "luo"]
PINYIN_GIVEN = ["wei", "fang", "na", "min", "jing", "qiang", "lei", "jun", "yang", "yong", "yan", "jie", "tao", "ming", "chao", "xia", "ping", "gang", "hua", "jianguo"]
CITIES = [
    ("北京市", "", "海淀区"), ("北京市", "", "朝阳区"), ("上海市", "", "徐汇区"), ("上海市", "", "浦东新区"),
    ("浙江省", "杭州市", "西湖区"), ("广东省", "深圳市", "南山区"), ("四川省", "成都市", "武侯区"), ("湖北省", "武汉市", "洪山区"),
    ("江苏省", "南京市", "鼓楼区"), ("山东省", "青岛市", "市南区"), ("河南省", "郑州市", "金水区"), ("陕西省", "西安市", "雁塔区"),
    ("辽宁省", "沈阳市", "和平区"), ("湖南省", "长沙市", "岳麓区"), ("福建省", "厦门市", "思明区"), ("天津市", "", "南开区"),
    ("重庆市", "", "渝中区"), ("安徽省", "合肥市", "蜀山区"),
]
ROADS = ["中山路", "人民路", "解放路", "文三路", "建设大道", "长江路", "学院路", "光明街", "和平里大街", "幸福路", "新华路", "青年路", "滨江大道", "科技园南路", "五一路", "东风路"]
ESTATES = ["阳光花园", "锦绣家园", "翠苑三区", "金色港湾", "绿城桂花园", "万科城", "碧桂园", "幸福里小区", "紫荆公寓", "丽景湾"]
COUNTIES = [("河南省", "周口市", "郸城县", "城郊乡", "李庄村"), ("安徽省", "阜阳市", "临泉县", "杨桥镇", "王寨村"), ("山东省", "临沂市", "沂南县", "张庄镇", "刘家村"),
            ("河北省", "邯郸市", "魏县", "双井镇", "陈庄村"), ("江西省", "赣州市", "于都县", "罗坳镇", "高村"), ("四川省", "南充市", "仪陇县", "马鞍镇", "石板村")]
CN_DIGITS = "〇一二三四五六七八九"
PHONE_WORDS = ["电话", "联系电话", "手机", "手机号", "联系方式", "Tel", "TEL", "电话号码", "座机", "家属电话", "Tel.", "Mobile", "手机/微信"]
RECORD_WORDS = ["住院号", "病案号", "门诊号", "ID号", "病历号", "患者ID", "就诊卡号", "登记号", "住院号码", "病案号码"]

# Look-alikes: words and figures that resemble identifiers and must survive de-identification.
LOOKALIKES = {
    "drug": ["阿莫西林胶囊", "头孢曲松钠", "二甲双胍缓释片", "阿司匹林肠溶片", "氯吡格雷", "阿托伐他汀钙片", "美托洛尔缓释片", "硝苯地平控释片", "奥美拉唑肠溶胶囊",
             "甘精胰岛素", "华法林钠片", "左氧氟沙星", "连花清瘟胶囊", "六味地黄丸", "安宫牛黄丸", "云南白药胶囊", "马来酸依那普利", "布洛芬缓释胶囊", "瑞舒伐他汀",
             "丹参滴丸", "复方甘草片", "杜冷丁（哌替啶）", "柳氮磺吡啶", "甲钴胺片", "高三尖杉酯碱", "孟鲁司特钠", "黄体酮胶囊", "金水宝胶囊", "苏黄止咳胶囊", "雷贝拉唑钠"],
    "herb": ["徐长卿", "刘寄奴", "何首乌", "杜仲", "王不留行", "陈皮", "使君子", "白术", "黄芪", "黄连", "柴胡", "甘草", "金银花", "连翘", "马齿苋", "石斛", "牛膝", "钩藤",
             "白芍", "茯苓", "丹参", "胡黄连", "党参", "当归", "熟地黄", "桂枝", "麻黄", "苏叶", "姜半夏", "龙骨"],
    "disease": ["2型糖尿病", "高血压病3级（很高危）", "帕金森病", "阿尔茨海默病", "克罗恩病", "桥本甲状腺炎", "川崎病", "白塞病", "唐氏综合征", "马方综合征", "陈旧性脑梗死",
                "霍奇金淋巴瘤", "格林-巴利综合征", "库欣综合征", "急性白血病", "梗阻性黄疸", "雷诺综合征", "陈旧性心肌梗死", "慢性阻塞性肺疾病急性加重", "社区获得性肺炎",
                "伯基特淋巴瘤", "艾迪生病", "房颤", "高尿酸血症", "冠状动脉粥样硬化性心脏病", "肝豆状核变性（威尔逊病）", "石淋", "史蒂文斯-约翰逊综合征", "格雷夫斯病", "向心性肥胖"],
    "eponym": ["王氏评分", "麦氏点压痛", "墨菲征阳性", "巴宾斯基征阳性", "克氏征阴性", "布氏征阴性", "潘氏试验阳性", "陈氏分级Ⅱ级", "霍纳征", "刘氏牵引", "Child-Pugh B级",
               "张氏改良评分", "Glasgow 评分15分", "李氏分型Ⅲ型", "Wells 评分4分", "赵氏三角", "Hunt-Hess Ⅱ级", "周氏手法复位", "NYHA Ⅲ级", "吴氏截骨术"],
    "organism": ["李斯特菌", "沙门菌", "志贺菌", "伯氏疏螺旋体", "白念珠菌", "金黄色葡萄球菌", "鲍曼不动杆菌", "肺炎克雷伯菌", "铜绿假单胞菌", "幽门螺杆菌",
                 "洋葱伯克霍尔德菌", "立克次体", "嗜麦芽窄食单胞菌", "杜克雷嗜血杆菌", "白色葡萄球菌", "烟曲霉", "马尔尼菲篮状菌", "黄曲霉", "屎肠球菌", "新型隐球菌"],
    "dose": ["0.5g 口服 tid", "12U 皮下注射 qn", "250ml 静滴 qd", "40mg 静推 bid", "100mg 口服 qd", "2g 静滴 q12h", "0.25mg 口服 qd", "5000U 皮下注射 q12h", "10mg 口服 qn",
             "1.5g 静滴 q8h", "75mg 口服 qd", "20mg 口服 qd", "0.4g 静滴 qd", "8U 餐前皮下注射", "600mg 口服 tid", "3.375g 静滴 q6h", "50μg 口服 qd", "30ml 口服 tid"],
    "lab": ["WBC 12.3×10^9/L", "Hb 98g/L", "PLT 138×10^9/L", "肌酐 132μmol/L", "HbA1c 7.8%", "INR 2.3", "空腹血糖 11.2mmol/L", "CRP 45mg/L", "HBV-DNA 23500000 IU/mL",
            "D-二聚体 1380μg/L", "CD4+ T细胞 356个/μl", "尿蛋白定量 1350mg/24h", "BNP 1862pg/ml", "ALT 86U/L", "TSH 0.012mIU/L", "血钾 3.1mmol/L", "PCT 2.35ng/ml",
            "尿酸 528μmol/L", "LDL-C 3.86mmol/L", "血氨 78μmol/L", "AFP 1210ng/ml", "ESR 68mm/h", "CA125 356U/ml", "HBsAg 2500 COI", "TnI 0.138ng/ml", "Na 128mmol/L"],
    "date": ["2023年5月12日", "2023-05-12", "2024年1月3日", "2022-11-28", "2023年12月30日", "2024-02-17", "2023年8月9日", "2021-06-15", "2024年3月21日", "2023-10-04",
             "2022年7月19日", "2024-04-08"],
    "dept": ["心内科", "呼吸与危重症医学科", "急诊科", "神经外科二病区", "重症医学科（ICU）", "内分泌科", "消化内科", "肝胆外科", "肿瘤内科", "小儿科", "妇产科", "骨科三病区",
             "中医科", "感染科", "肾内科", "老年医学科"],
    "hosp": ["北京协和医院", "复旦大学附属中山医院", "中山大学附属第一医院", "四川大学华西医院", "华中科技大学同济医学院附属协和医院", "浙江大学医学院附属邵逸夫医院",
             "上海交通大学医学院附属瑞金医院", "县人民医院", "市第一人民医院", "南京鼓楼医院", "北京朝阳医院", "省中医院"],
    "cite": ["（Wang 等，2019）", "（Li et al., 2021）", "Zhang 等（2020）的研究", "文献[12]报道", "（Chen et al., 2018; Liu et al., 2020）", "Smith 等 2017 年的队列研究",
             "（Zhou 2022）", "Huang 等（2023）的 Meta 分析", "（Gao et al., 2016）", "Xu 等报道（2019）"],
    "misc": ["国药准字H20063621", "批号 20230412", "CT 值 45HU", "孕 38+2 周", "G2P1", "Apgar 评分 9-10 分", "NIHSS 评分 12 分", "血压 135/85mmHg", "心率 78 次/分",
             "体重 65kg", "BMI 23.4", "尿量 2350ml", "ICD-10 编码 E11.9", "第 3 疗程", "术后第 12 天", "胎心 140 次/分", "体温 38.6℃", "SpO2 93%", "1:10000 肾上腺素",
             "0.9% 氯化钠 100ml", "痰培养 10^5 CFU/ml", "电击 200J", "射血分数 45%", "呼吸 20 次/分", "血氧饱和度 96%", "Ⅱ 度房室传导阻滞", "头孢过敏史 10 年", "15 分钟"],
}

TEMPLATES: dict[str, dict[str, list[str]]] = {
    "admission": {
        "phi": [
            "入院记录\n姓名：{name}　性别：{sex}　年龄：{age}岁\n出生日期：{dob}\n住院号：{mrn}　床号：{bed}",
            "姓名 {name}，{sex}，{age}岁，民族：汉族，职业：退休。住址：{addr}。联系电话：{phone}。病史陈述者：患者本人，可靠。",
            "患者{name}，{sex}，{age}岁，因“反复胸闷3年，加重1天”于{date}入院。",
            "身份证号：{idc}，婚姻：已婚，联系人：{name}（{rel}），{pw}：{mobile}。",
            "现病史：{name}于3天前无明显诱因出现发热，{misc}，自服{drug}无好转，今来我院{dept}就诊。",
            "病史由{rel}{name}代诉，{rel}{pw}{local}，其述患者既往有{disease}病史。",
            "主任医师：{name}　主治医师：{name}　住院医师：{name}　记录时间：{date}",
            "{sur}主任查房后指示：患者{disease}诊断明确，继续{drug} {dose}。",
            "入院诊断：1.{disease} 2.{disease}　医师签名：{name}　病案号：{mrn}",
            "个人史：生于{addr2}，久居本地，出生日期{dob}，无疫区接触史，电子邮箱 {email}。",
            "患者家属（{rel}，{name}）{pw} {mobile}，已告知病情，签署知情同意书。",
            "入院时查体：T 36.8℃，{misc}。{name}神志清楚，{eponym}。患者 ID 号：{mrn}",
        ],
        "clean": [
            "既往史：{disease}病史10年，规律服用{drug} {dose}，否认{disease}病史。",
            "查体：{misc}，{eponym}，双肺呼吸音粗，肌张力正常，向患者及家属交代病情。",
            "辅助检查：{date}查血常规示{lab}，{lab}；尿培养见{organism}。",
            "入院诊断：{disease}；{disease}。余无特殊，建议完善相关检查。",
            "中医四诊：舌淡红苔白，脉弦。拟方：{herb}15g、{herb}10g、{herb}12g、{herb}6g。",
            "患者于{date}收住{dept}，入院时{misc}，{misc}，卧床休息，床边心电监护。",
        ],
    },
    "outpatient": {
        "phi": [
            "门诊病历　门诊号：{mrn}　姓名：{name}　{sex}　{age}岁　科别：{dept}",
            "{name}，{sex}，{age}岁，主诉：咳嗽咳痰1周。就诊卡号 {mrn}，{pw}{phone}。",
            "接诊医生：{name}　就诊日期：{date}　初步诊断：{disease}",
            "患者自述{sur}医生上次开的{drug}效果不佳，要求调整用药。",
            "预约{date}复诊，{sur}{ttl}门诊；有问题可拨打{pw}{landline}咨询。",
            "出生日期：{dob}　身份证号：{idc}　医保类型：职工医保",
            "家住{addr}，{age}岁{sex}性，陪同就诊者{name}（{rel}）。",
            "{sur}女士，{age}岁，复查{lab}，较前好转，继续{drug} {dose}。",
            "检查报告将发送至邮箱{email}，请注意查收；如未收到，请联系分诊台。",
            "医师：{name}（{dept}）　门诊号{mrn}　病历号：{mrn}",
            "{name}先生因{disease}随访，{pw}：{mobile}，住址{addr}。",
            "转介绍自{name}医生，患者 {name} 既往在{hosp}诊断{disease}。",
        ],
        "clean": [
            "主诉：反复上腹痛2年。现病史：{date}胃镜示慢性胃炎，{organism}阳性。",
            "处理：{drug} {dose}，{drug} {dose}，1周后复查{lab}。",
            "体格检查：{misc}，{eponym}，{misc}。",
            "诊断：{disease}。医嘱：低盐低脂饮食，{misc}，门诊随访。",
            "据{cite}，该方案可降低复发率；患者同意先行保守治疗。",
            "中药处方：{herb}、{herb}、{herb}各10g，水煎服，每日一剂。",
        ],
    },
    "nursing": {
        "phi": [
            "{bed}床{name}，{sex}，{age}岁，{disease}，今日{misc}，{misc}。",
            "床号：{bed}　姓名：{name}　住院号：{mrn}　护理级别：一级护理",
            "交班：{bed}床 {name} 夜间睡眠可，{bed}床 {name} 诉腹胀，已通知值班医生。",
            "护士{name}遵医嘱予{drug} {dose}，患者无不适。记录者：{name}",
            "{sur}阿姨今日精神好，家属{name}陪护，{pw}{mobile}。",
            "患者{name}（床号{bed}）跌倒风险评估高危，已告知{rel}{name}。",
            "护理记录单　科室：{dept}　{bed}床　患者：{name}　出生日期：{dob}",
            "夜班：{sur}大爷血压{misc}，报告{sur}医生，遵医嘱处理。",
            "责任护士：{name}　护士长：{name}　病案号：{mrn}",
            "家属留下的{pw}：{landline}，另一联系人{name} {mobile}。",
            "{bed}床家属反映患者{name}夜间咳嗽加重，已通知{sur}主任。",
            "健康宣教对象：{name}及其{rel}；宣教资料已发送至{email}。",
        ],
        "clean": [
            "患者今日{misc}，{misc}，床头抬高30°，床上活动，无压疮。",
            "遵医嘱予{drug} {dose}，输液通畅，穿刺处无红肿。",
            "痰培养回报{organism}，已执行接触隔离，床旁放置隔离标识。",
            "复查{lab}，{lab}，已报告值班医生。",
            "协助患者床边坐起，{misc}，指导有效咳嗽咳痰。",
            "{date}留取标本送检，{misc}，记录24小时出入量。",
        ],
    },
    "prescription": {
        "phi": [
            "处方笺　姓名：{name}　性别：{sex}　年龄：{age}岁　门诊号：{mrn}\n临床诊断：{disease}\nRp：{drug} {dose}",
            "医师：{name}　审核药师：{name}　调配：{name}　核对发药：{name}",
            "麻醉药品处方　患者：{name}　身份证号：{idc}　代办人：{name}　代办人身份证号：{idc}",
            "处方　ID号：{mrn}　科别：{dept}　费别：自费　患者{name}　{pw}：{phone}",
            "Rp：{drug} {dose}；{drug} {dose}　开方医生：{sur}医师",
            "取药人{name}，地址{addr}，{pw} {mobile}，出生日期{dob}。",
            "儿科处方：患儿{name}，{age}岁，{misc}，监护人{name}，{pw}{phone}。",
            "处方号 20230512-0032　病历号：{mrn}　{name}　{drug} {dose}",
            "药师{name}提示：{drug}与{drug}合用需监测{lab}。患者 {name}。",
            "外配处方：{name}，{sex}，住院号{mrn}，床号{bed}，{drug} {dose}",
            "电子处方已推送至患者邮箱：{email}；如需配送请确认收货地址：{addr}。",
            "慢病长处方：{name}，{disease}，由{sur}主任审核，{pw}{local}。",
        ],
        "clean": [
            "Rp：{drug} {dose}；{drug} {dose}；{drug} {dose}。",
            "用法：{drug} {dose}，餐后服用；{misc}。",
            "中药饮片：{herb}15g　{herb}10g　{herb}9g　{herb}6g　共7剂。",
            "药品：{drug}，{misc}，有效期至2025年6月。",
            "注意：与{drug}合用可增加出血风险，定期复查{lab}。",
            "临床诊断：{disease}；皮试结果：阴性；{misc}。",
        ],
    },
    "discharge": {
        "phi": [
            "出院小结\n姓名：{name}　性别：{sex}　年龄：{age}岁　住院号：{mrn}　床号：{bed}\n入院日期：{date}　出院日期：{date}",
            "患者{name}因{disease}于{date}入住我科，经{drug}治疗后好转出院。",
            "出院医嘱：1.{drug} {dose}；2.两周后{dept}门诊复诊，可找{sur}医生；3.如有不适请拨打{pw}{landline}。",
            "主治医师：{name}　住院医师：{name}　上级医师：{name}（主任医师）",
            "出院时情况：{name}精神可，{misc}，{eponym}。随访{pw}：{mobile}。",
            "病案号：{mrn}　出生年月：{dob}　籍贯：{addr2}　现住址：{addr}",
            "出院带药：{drug} {dose}。患者{rel}{name}已领取，{pw}{phone}。",
            "本次住院期间经{sur}主任、{name}副主任医师多次查房，诊断明确。",
            "随访安排：由{name}护士电话随访，患者{pw}（{mobile}），备用{landline}。",
            "出院诊断：{disease}。{name}，{age}岁，身份证号{idc}，于{date}办理出院。",
            "检查结果将发送至{email}，或由{rel}{name}来院领取，{pw}{local}。",
            "会诊意见：{hosp}{name}教授会诊，建议继续{drug}治疗，{sur}教授同意。",
        ],
        "clean": [
            "入院情况：{misc}，{eponym}，{misc}。诊疗经过：予{drug} {dose}抗感染。",
            "出院诊断：1.{disease}；2.{disease}。出院时{misc}。",
            "住院期间血培养示{organism}，根据药敏改用{drug} {dose}，{lab}降至正常。",
            "出院医嘱：低盐饮食，{drug} {dose}，{date}复查{lab}。",
            "中医出院带药：{herb}12g、{herb}10g、{herb}9g，7剂。",
            "本病例与{cite}描述一致，已于{date}完成术后第一次随访。",
        ],
    },
    "referral": {
        "phi": [
            "转诊单\n转出单位：{hosp}　转入单位：{hosp}\n患者姓名：{name}　身份证号：{idc}　{pw}：{phone}",
            "兹有患者{name}（{sex}，{age}岁）因{disease}，需转至贵院{dept}进一步诊治，请{sur}主任惠诊。",
            "转诊医生：{name}（{dept}）　{pw}：{mobile}　邮箱：{email}",
            "患者{name}，出生日期{dob}，住址：{addr}，医保卡已随诊。",
            "{sur}教授您好：现转诊一例{disease}患者{name}，病历号{mrn}，详见附件。",
            "原住院号：{mrn}；原床号：{bed}；联系人：{name}（{rel}）{mobile}",
            "接诊单位回执：已收到{name}医生转诊的患者{name}，{pw}{landline}。",
            "双向转诊：下转至社区卫生服务中心，由{name}全科医生随访，{pw} {local}。",
            "{name}，{sex}，{dob}出生，现住{addr}，因{disease}申请转诊。",
            "转诊理由：病情超出本院诊治能力。经治医师 {name} 　科主任 {name} 签字。",
            "患者{rel}{name}陪同转院，身份证{idc}，{pw}{mobile}。",
            "请{hosp}{dept}的{sur}医生协助安排床位，我院{pw}{landline}，邮件{email}。",
        ],
        "clean": [
            "转诊原因：{disease}，本院{misc}，{lab}，需上级医院进一步诊治。",
            "已完成检查：{date}胸部CT、{lab}、{lab}，病原学见{organism}。",
            "目前用药：{drug} {dose}；{drug} {dose}。过敏史：{misc}。",
            "转入科室：{dept}；初步诊断：{disease}；{eponym}。",
            "参考{cite}，建议上级医院评估手术指征。",
            "中医诊疗记录：曾服{herb}、{herb}、{herb}等，症状缓解不明显。",
        ],
    },
    "chat": {
        "phi": [
            "患者：{sur}医生您好，我是{name}的{rel}，想问一下复查结果。",
            "医生：请留一下您的{pw}，我们方便联系。患者：{mobile}，我叫{name}。",
            "患者：我妈妈{name}在{bed}床，今天能出院吗？医生：要等{sur}主任查完房。",
            "家属：医生，我的手机是{phone}，有情况随时打给我，我姓{sur}。",
            "患者：我住在{addr}，离医院比较远，能不能线上复诊？",
            "医生：您好，{sur}女士，您的住院号是{mrn}吗？患者：对的。",
            "患者：我身份证号是{idc}，挂号的时候填错了，能帮我改一下吗？",
            "患者：报告能发我邮箱吗？{email}。医生：可以，稍后发送。",
            "家属：我爸{name}，{dob}出生，今年{age}岁，吃{drug}以后头晕。",
            "患者：{sur}大夫，昨天{name}护士说要空腹抽血，是吗？",
            "医生：我是{dept}的{name}，有问题打科室{pw}{landline}找我。",
            "患者：我是{name}，之前在{sur}老师那里看的，{pw}{local}，麻烦回个电话。",
        ],
        "clean": [
            "患者：医生，吃了{drug}以后{misc}，正常吗？医生：属于常见反应，多喝水。",
            "医生：化验结果{lab}，{lab}，问题不大，按时吃{drug}就行。",
            "患者：报告上写{organism}，严重吗？医生：需要用{drug}治疗两周。",
            "患者：中医开的{herb}和{herb}能一起吃吗？医生：可以，饭后服用。",
            "医生：您这是{disease}，{eponym}，先做个{misc}的评估。",
            "患者：{date}做的检查还需要再做吗？医生：三个月后复查{lab}。",
        ],
    },
}

TITLES = ["医生", "主任", "大夫", "教授", "医师", "护士长"]


@dataclass
class Span:
    type: str
    start: int
    end: int
    text: str


@dataclass
class Record:
    id: str
    style: str
    template: str
    split: str
    clean: bool
    text: str
    spans: list[Span] = field(default_factory=list)


def fullwidth(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isdigit() or c == "-" else c for c in s)


def id_check_digit(first17: str) -> str:
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS)) % 11]


def birth_ymd(rng: random.Random) -> tuple[int, int, int]:
    return rng.randint(1930, 2015), rng.randint(1, 12), rng.randint(1, 28)


def id_card(rng: random.Random) -> str:
    y, m, d = birth_ymd(rng)
    first17 = f"{rng.choice(REGIONS)}{y:04d}{m:02d}{d:02d}{rng.randint(0, 999):03d}"
    number = first17 + id_check_digit(first17)
    form = rng.random()
    if form < 0.1:
        return f"{number[:6]} {number[6:14]} {number[14:]}"
    if form < 0.17:
        return fullwidth(number)
    if form < 0.22:
        return number.replace("X", "x")
    return number


def mobile(rng: random.Random) -> str:
    digits = rng.choice(MOBILE_PREFIXES) + "".join(rng.choice("0123456789") for _ in range(8))
    a, b, c = digits[:3], digits[3:7], digits[7:]
    return rng.choice([digits, digits, digits, f"{a}-{b}-{c}", f"{a} {b} {c}", f"+86 {digits}", f"+86-{a}-{b}-{c}", fullwidth(digits), f"{a}－{b}－{c}", f"(+86){digits}"])


def local_part(rng: random.Random) -> str:
    """Landline local numbers, normal and odd (leading 0 or 1, short, repeated digits)."""
    n = rng.choice([7, 8, 8, 6])
    first = rng.choice("23456789" if rng.random() < 0.5 else "01")
    body = first + "".join(rng.choice("0123456789") for _ in range(n - 1))
    if rng.random() < 0.1:
        body = rng.choice("123456789") * n
    return body


def landline(rng: random.Random) -> str:
    area, local = rng.choice(AREA_CODES), local_part(rng)
    if len(local) < 7:
        local = local + "0" * (7 - len(local))
    half = len(local) // 2
    return rng.choice([f"{area}-{local}", f"{area}-{local}", f"({area}){local}", f"（{area}）{local}", f"{area} {local[:half]} {local[half:]}",
                       f"{area}－{local}", f"+86-{area[1:]}-{local}", f"{area}-{local}转{rng.randint(100, 9999)}", f"{area}-{local}-{rng.randint(10, 999)}", fullwidth(f"{area}-{local}")])


def phone(rng: random.Random) -> str:
    return mobile(rng) if rng.random() < 0.6 else landline(rng)


def email(rng: random.Random) -> str:
    user = rng.choice([
        f"{rng.choice(PINYIN)}{rng.choice(PINYIN_GIVEN)}{rng.randint(1950, 2010)}",
        f"{rng.choice(PINYIN)}.{rng.choice(PINYIN_GIVEN)}",
        f"{rng.choice(PINYIN)}_{rng.choice(PINYIN_GIVEN)}{rng.randint(1, 99)}",
        f"{rng.randint(10000, 999999999)}",
        f"dr{rng.choice(PINYIN)}{rng.randint(1, 999)}",
    ])
    at = "＠" if rng.random() < 0.05 else "@"
    return f"{user}{at}{rng.choice(EMAIL_DOMAINS)}"


def birth_date(rng: random.Random) -> str:
    y, m, d = birth_ymd(rng)
    cn = "".join(CN_DIGITS[int(c)] for c in str(y))
    return rng.choice([f"{y}年{m}月{d}日", f"{y}年{m:02d}月{d:02d}日", f"{y}-{m:02d}-{d:02d}", f"{y}/{m}/{d}", f"{y}.{m:02d}.{d:02d}",
                       f"{y}{m:02d}{d:02d}", fullwidth(f"{y}年{m}月{d}日"), f"{y}年{m}月", f"{cn}年{chinese_number(m)}月{chinese_number(d)}日"])


def chinese_number(n: int) -> str:
    """1-31 in Chinese numerals, as written in dates (十二, 二十八)."""
    tens, ones = divmod(n, 10)
    return ("" if tens == 0 else ("十" if tens == 1 else CN_DIGITS[tens] + "十")) + ("" if ones == 0 else CN_DIGITS[ones])


def record_number(rng: random.Random) -> str:
    n = "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 10)))
    return rng.choice([n, n, f"ZY{n}", f"MZ{n}", f"BA-{n[:4]}-{n[4:]}", f"P{n}", f"{rng.randint(2018, 2024)}-{n[:6]}", fullwidth(n), f"No.{n}", f"H{n[:7]}"])


def bed_number(rng: random.Random) -> str:
    n = rng.randint(1, 60)
    return rng.choice([str(n), str(n), f"{n:02d}", f"加{n}", f"A{n:02d}", fullwidth(str(n)), f"{n}-{rng.randint(1, 3)}"])


def address(rng: random.Random) -> str:
    form = rng.random()
    if form < 0.2:
        prov, city, county, town, village = rng.choice(COUNTIES)
        return f"{prov}{city}{county}{town}{village}{rng.randint(1, 12)}组"
    prov, city, dist = rng.choice(CITIES)
    road, no = rng.choice(ROADS), f"{rng.randint(1, 999)}号"
    unit = rng.choice([f"{rng.randint(1, 20)}号楼{rng.randint(1, 6)}单元{rng.randint(1, 30)}0{rng.randint(1, 4)}室", f"{rng.choice(ESTATES)}{rng.randint(1, 30)}栋{rng.randint(101, 2804)}",
                       f"{rng.randint(1, 40)}弄{rng.randint(1, 60)}号{rng.randint(101, 1204)}室", ""])
    if form < 0.6:
        return f"{prov}{city}{dist}{road}{no}{unit}"
    if form < 0.85:
        return f"{city or prov}{dist}{road}{no}"
    return f"{dist}{rng.choice(ESTATES)}{rng.randint(1, 30)}栋{rng.randint(1, 4)}单元{rng.randint(101, 2804)}室"


def full_name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice([1, 2, 2, 2])))


def surname(rng: random.Random) -> str:
    return rng.choice(SURNAMES[:-5])  # compound surnames rarely stand alone before a title


PHI_SLOTS = {
    "name": ("name", full_name),
    "sur": ("name", surname),
    "mobile": ("phone", mobile),
    "landline": ("phone", landline),
    "local": ("phone", local_part),
    "phone": ("phone", phone),
    "idc": ("id_card", id_card),
    "email": ("email", email),
    "addr": ("address", address),
    "dob": ("birth_date", birth_date),
    "mrn": ("record_number", record_number),
    "bed": ("bed_number", bed_number),
}


def plain_slots(rng: random.Random, split: str) -> dict:
    """Fillers that identify nobody; look-alike pools take alternate entries per split."""
    half = 0 if split == "tune" else 1
    pools = {k: v[half::2] for k, v in LOOKALIKES.items()}
    return {
        **{k: (lambda pool=pool: rng.choice(pool)) for k, pool in pools.items()},
        "sex": lambda: rng.choice("男女"),
        "age": lambda: str(rng.randint(2, 92)),
        "rel": lambda: rng.choice(RELATIVES),
        "pw": lambda: rng.choice(PHONE_WORDS),
        "ttl": lambda: rng.choice(TITLES),
        "addr2": lambda: rng.choice(CITIES)[0],
    }


SLOT = re.compile(r"\{(\w+)\}")


def fill(template: str, rng: random.Random, split: str) -> tuple[str, list[Span]]:
    plain, out, spans, pos = plain_slots(rng, split), [], [], 0
    for m in SLOT.finditer(template):
        out.append(template[pos : m.start()])
        start = sum(map(len, out))
        key = m.group(1)
        if key in PHI_SLOTS:
            kind, make = PHI_SLOTS[key]
            value = make(rng)
            spans.append(Span(kind, start, start + len(value), value))
        else:
            value = plain[key]()
        out.append(value)
        pos = m.end()
    out.append(template[pos:])
    return "".join(out), spans


def generate(seed: int = SEED, per_template: int = PER_TEMPLATE) -> list[Record]:
    rng, records = random.Random(seed), []
    for style, kinds in TEMPLATES.items():
        split = "heldout" if style in HELDOUT_STYLES else "tune"
        for kind, templates in kinds.items():
            count = per_template if kind == "phi" else per_template - 4
            for t, template in enumerate(templates):
                for i in range(count):
                    text, spans = fill(template, rng, split)
                    records.append(Record(f"{style}-{kind}{t:02d}-{i:02d}", style, f"{style}-{kind}{t:02d}", split, kind == "clean", text, spans))
    return records


def write(path: Path = DATA) -> int:
    records = generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return len(records)


def load(path: Path = DATA) -> list[Record]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Record(**{**r, "spans": [Span(**s) for s in r["spans"]]}) for r in rows]


if __name__ == "__main__":
    print(f"{write()} records written to {DATA.name}")
