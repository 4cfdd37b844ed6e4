// The English text the synthetic tokenizer learns its BPE pieces from: everyday prose, a little
// technical writing, dialogue, numbers and punctuation, so that ordinary English encodes into
// word-sized pieces. Written for this project; plain ASCII.
#include "synthetic/synthetic.h"

namespace phinfer::synthetic {

std::string_view builtin_corpus() {
  static constexpr std::string_view kText = R"CORPUS(
The morning was cold and clear, and the small town by the river was still asleep when the first
bus came down the hill. A few people were waiting at the stop with their hands in their pockets.
One of them, an old man with a long gray coat, looked at the sky and said that it would rain
before noon. Nobody answered him, but everyone looked up at the sky as well.

Hello! How are you today? I am fine, thank you. What would you like to do this afternoon? We
could go for a walk in the park, visit the museum, or stay at home and read a good book. The
weather is nice, so I think a walk is the best idea. Let me know what you think.

When you write a program, you give the computer a list of instructions. The computer follows
them one by one, very quickly and without ever getting tired. A good program is easy to read,
easy to change, and does exactly what it is supposed to do. A bad program may work today and
fail tomorrow, when the input is a little different from what the author expected. That is why
programmers write tests: small programs that check that the main program still works after
every change. Tests are not a guarantee, but they catch many mistakes early, when they are cheap
to fix.

The history of the region goes back thousands of years. Farmers grew wheat and barley in the
valleys, and shepherds moved their animals to the mountains every summer. Later, merchants built
roads and bridges, and the villages became towns. In the nineteenth century, the railway
arrived, and with it came factories, schools, hospitals and newspapers. Today most people work
in offices, shops and services, but the old farms are still there, and many families keep a
small garden behind their house.

To make a simple bread, you need flour, water, salt and yeast. Mix the flour and the salt in a
large bowl. Dissolve the yeast in warm water and pour it into the flour. Stir until the dough
comes together, then knead it on the table for about ten minutes, until it is smooth and soft.
Put the dough back in the bowl, cover it with a clean towel, and let it rise for one or two
hours in a warm place. Shape the loaf, let it rise again for half an hour, and bake it in a hot
oven for thirty to forty minutes. The bread is ready when it sounds hollow if you knock on the
bottom.

Science is a way of learning about the world by asking questions and testing the answers.
Scientists observe something, propose an explanation, and then design an experiment to see
whether the explanation holds. If the results agree with the prediction, the idea gains
support; if they do not, the idea must be changed or abandoned. Over time, this process has
given us a detailed understanding of light and sound, of heat and energy, of the cells in our
bodies and the stars in the sky. The same method works for small questions too: why does the
plant by the window grow faster than the one in the corner? Measure, compare, and think.

"Where are you going?" asked the girl.
"To the market," said her brother. "Mother wants apples, onions and a piece of cheese."
"Can I come with you?"
"Only if you carry the basket on the way back."
She laughed and ran to get her shoes. The two children walked down the street together, past the
bakery, the post office and the little church with the green door. The market was full of
noise and color: people were buying and selling, talking and shouting, and the air smelled of
fresh fruit, flowers and coffee.

The meeting will start at 9:30 on Monday, 12 May, in room 204. Please bring your notes and the
report from last week. The agenda has three items: the budget for the next year, the new office
plan, and questions from the team. If you cannot attend, send an email to the organizer before
Friday. The total cost of the project is about 4,500 dollars, which is 15 percent less than we
planned in January. There are 7 days in a week, 24 hours in a day, 60 minutes in an hour and 365
days in a year, except in a leap year, which has 366.

Language models read text as a sequence of tokens. A token can be a whole word, a part of a
word, a single character or even a single byte. The model looks at all the tokens it has seen so
far and computes a probability for every possible next token. Then one token is chosen, added
to the sequence, and the process repeats. This simple loop, done many times, produces
sentences, paragraphs and whole answers. The quality of the answer depends on the data the
model learned from, on its size, and on the way the next token is chosen at each step.

Good writing is clear, short and honest. Say what you mean, and mean what you say. Use simple
words when they work, and explain the difficult ones. Read your text aloud before you send it:
if you run out of breath, the sentence is too long. If you stumble, the order of the words is
probably wrong. Ask a friend to read it too, because other people see mistakes that we cannot
see in our own work.

The ship left the harbor at dawn. The sea was calm, the wind came from the west, and the sails
filled slowly as the sailors pulled the ropes. The captain stood on the deck and watched the
coast become smaller and smaller until it disappeared. For three weeks they saw nothing but
water, clouds and birds. Then, one evening, a young sailor climbed the mast and shouted that he
could see land. Everyone ran to the side of the ship. There, far away, was a dark line of hills,
and above them the first lights of a city.

Questions and answers:
What is the capital of France? The capital of France is Paris.
How many legs does a spider have? A spider has eight legs.
Why is the sky blue? Sunlight is scattered by the air, and blue light is scattered more than
red light, so the sky looks blue during the day.
What should I do if I feel sick? Rest, drink plenty of water, and see a doctor if it does not
get better in a few days.
Can you help me with my homework? Of course. Which subject is it, and what is the question?

A good friend listens when you talk, helps when you need help, and tells you the truth even when
it is not what you want to hear. Friendship takes time: you learn about each other slowly,
through shared work, shared meals and shared problems. Some friends stay with us for our whole
lives, others only for a few years, but each of them teaches us something about ourselves.

The children were playing in the garden while their parents prepared dinner in the kitchen. The
dog was sleeping under the table, and the cat was watching the birds from the window. It had been
a long and happy day. Tomorrow they would travel to the city to see their grandparents, who
lived in a tall building near the central station. The grandfather always told stories about
his work on the railway, and the grandmother always made a large chocolate cake.

Energy cannot be created or destroyed; it can only change from one form into another. When you
burn wood, the chemical energy stored in it becomes heat and light. When water falls from a dam,
its energy turns a turbine and becomes electricity. Our bodies turn the energy in food into
movement, warmth and thought. Using energy wisely means wasting less of it: closing windows in
winter, turning off lights, and choosing machines that need less power for the same work.

Thank you for your message. I have read your proposal carefully, and I think it is a very good
start. I have a few small suggestions. First, the introduction could be shorter. Second, the
examples in the third section would be easier to follow with a simple diagram. Finally, please
check the numbers in the last table, because two of them do not match the text. I look forward
to the next version. Best regards, and have a nice weekend.

Every year, when the days become longer and the snow melts, the whole valley changes. The
rivers grow wide and fast, the fields turn green, and the trees are suddenly full of leaves and
birds. Farmers start working early in the morning and finish late in the evening. Children play
outside after school until their parents call them home for dinner. In autumn the leaves turn
yellow, orange and red, the harvest is brought in, and the first cold winds come down from the
mountains.

user: Please summarize the text in one sentence.
assistant: The text describes how the seasons change life in a quiet mountain valley.
user: Write a short poem about the sea.
assistant: The sea is wide, the sea is deep, it sings the sailors off to sleep; it keeps the
secrets of the old, in waves of silver, blue and gold.
user: Translate "good morning" into French.
assistant: "Good morning" in French is "bonjour".
user: What is 12 plus 30?
assistant: 12 plus 30 is 42.
A quick brown fox jumped over the lazy dog, and the dog did not even open its eyes. The fox
looked back, surprised, and then disappeared into the forest. Later that night the farmer
counted his chickens and found that every one of them was safe.

The human body is a remarkable machine. The heart beats about seventy times a minute and pumps
blood through the arteries and veins. The lungs bring oxygen into the blood, the stomach and the
intestines digest food, and the brain controls everything, from breathing to remembering a
friend's face. Bones give the body its shape, muscles move it, and the skin protects it from
heat, cold and infection. Sleep, exercise and a balanced diet keep all these systems healthy.

Our family is not large. My father is a teacher and my mother is an engineer. My older sister
studies medicine at the university, and my younger brother is still in primary school. We have
two grandmothers, one grandfather, four uncles, three aunts and eleven cousins, so our birthday
parties are always crowded, loud and wonderful.

The months of the year are January, February, March, April, May, June, July, August, September,
October, November and December. The days of the week are Monday, Tuesday, Wednesday, Thursday,
Friday, Saturday and Sunday. The colors of the rainbow are red, orange, yellow, green, blue,
indigo and violet. The planets of the solar system are Mercury, Venus, Earth, Mars, Jupiter,
Saturn, Uranus and Neptune.

Computers store everything as numbers. A number is written in binary with only two digits, zero
and one, and each digit is called a bit. Eight bits make a byte, which can hold a value between
0 and 255. Text is stored by giving every character a code: the letter A is 65, the letter a is
97, and a space is 32. Modern systems use a standard called Unicode, which covers almost every
writing system in the world, and an encoding called UTF-8, which uses one to four bytes for
each character. Images, sounds and videos are also just long lists of numbers, interpreted in
different ways by different programs.

She opened the letter slowly, because she already knew what it would say. The company had
accepted her application, and she would start working in the new office in September. She read
the letter twice, then a third time, and then she called her parents. Her mother cried, her
father asked about the salary, and her little brother wanted to know whether the office had a
swimming pool. It did not, but it had a very good restaurant on the top floor, with a view of
the whole city.

The function reads the input file line by line, splits each line into fields, and converts the
numbers. If a field is missing or cannot be parsed, it reports an error that names the file,
the line and the field, and stops. Otherwise it returns a list of records, sorted by date. The
caller can then filter the records, compute totals, or write them to a new file in a different
format. Keeping each step small and separate makes the code easier to test and to change.

Please remember to lock the door, turn off the heating and water the plants before you leave.
The keys are in the drawer next to the kitchen sink. If anything goes wrong, call the neighbor
on the second floor; she has a spare key and knows where everything is. We will be back on
Sunday evening, probably around eight o'clock, unless the train is late again.

Learning a new skill takes patience. At first everything feels slow and awkward, and small
mistakes are frustrating. But every day of practice makes the next day a little easier, and one
morning you notice that you are doing without effort what used to be impossible. Musicians,
athletes, painters and programmers all describe the same experience: steady practice, good
feedback, and the courage to keep going when progress seems to stop.
)CORPUS";
  return kText;
}

}  // namespace phinfer::synthetic
